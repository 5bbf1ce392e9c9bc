"""A trained policy run inside Godot 3.2 by the addon's SparringPolicy (GDScript), against onnxruntime.

The default policy network (observation normalisation, two hidden layers of 64, tanh)
of a 64-float observation and 8 discrete actions, with weights and normalisation
statistics moved away from their initial values as training moves them. It is
exported with the real exporter (the ONNX file and its Godot sidecar), and headless
``godot3-server`` times ``SparringPolicy.act()`` for one agent and ``act_rows()`` for
a group of agents (``example/checks/bench_policy.gd``: medians of repeated blocks).
onnxruntime (Python, 1 intra-op thread) runs the same file at batch 1 and at the
group's batch, for comparison; ratios are GDScript time / onnxruntime time. The
logits GDScript computes are compared with onnxruntime's on the same observations.

    python benchmarks/godot_inference.py [--agents 256] [--repeats 15]

Last line: ``godot_inference agent_us=<per decision, 1 agent> group_us_per_agent=<...>
max_abs_diff=<largest |GDScript logit - onnxruntime logit|>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from gymnasium import spaces

from onnx_latency import median_us  # this folder: python puts a script's own folder first on the path
from sparring.agents.policy import BehaviourPolicy
from sparring.export.exporter import export_policy
from sparring.spec import BehaviourSpec

PROJECT = Path(__file__).resolve().parents[1] / "engines" / "godot" / "example"
OBS, ACTIONS = 64, 8


def trained_looking_policy() -> BehaviourPolicy:
    torch.manual_seed(0)
    spec = BehaviourSpec("bench", spaces.Box(-1, 1, (OBS,), np.float32), spaces.Discrete(ACTIONS))
    policy = BehaviourPolicy(spec, hidden_sizes=(64, 64), normalize=True)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
        policy.normalizer.update(torch.rand(1000, OBS) * 2 - 1)
    return policy.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=256, help="agents in the group")
    parser.add_argument("--rows", type=int, default=1000, help="observations timed one by one (and compared)")
    parser.add_argument("--repeats", type=int, default=15, help="timed blocks in Godot (the median is reported)")
    args = parser.parse_args()
    godot = shutil.which("godot3-server")
    if godot is None:
        sys.exit("godot_inference: godot3-server is not on PATH (apt-get install godot3-server)")
    rows = max(args.rows, args.agents)
    obs = np.random.default_rng(0).uniform(-1, 1, (rows, OBS)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        export_policy(trained_looking_policy(), folder / "bench.onnx")
        obs.tofile(folder / "rows.f32")
        done = subprocess.run(
            [godot, "--no-window", "--path", str(PROJECT), "-s", "res://checks/bench_policy.gd",
             "--dir", str(folder), "--count", str(rows), "--agents", str(args.agents), "--repeats", str(args.repeats)],
            capture_output=True, text=True, timeout=600)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            sys.exit(f"godot_inference: bench_policy.gd failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        godot_times = json.loads(lines[-1])
        gdscript_logits = np.fromfile(folder / "outputs.f32", np.float32).reshape(rows, ACTIONS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(folder / "bench.onnx"), options, providers=["CPUExecutionProvider"])
    mask = np.ones((rows, ACTIONS), bool)
    ort_logits = session.run(["logits"], {"obs": obs, "action_mask": mask})[0]
    max_abs_diff = float(np.abs(gdscript_logits - ort_logits).max())
    one = {"obs": obs[:1], "action_mask": mask[:1]}
    crowd = {"obs": obs[: args.agents], "action_mask": mask[: args.agents]}
    ort_agent = median_us(lambda: session.run(["action"], one), 5000)
    ort_group = median_us(lambda: session.run(["action"], crowd), 1000) / args.agents
    agent_us, group_us = godot_times["agent_us"], godot_times["group_us_per_agent"]
    print(f"policy: {OBS} observations, hidden 64x64 tanh, {ACTIONS} discrete actions; load and compile in Godot: "
          f"{godot_times['prepare_ms']:.0f} ms")
    print(f"{'':>28} {'us per decision':>16} {'decisions/s':>12} {'/ onnxruntime':>14}")
    for label, us, ort_us in (("1 agent", agent_us, ort_agent), (f"group of {args.agents}", group_us, ort_group)):
        print(f"{'SparringPolicy, ' + label:>28} {us:>16.1f} {1e6 / us:>12.0f} {us / ort_us:>14.1f}")
        print(f"{'onnxruntime, ' + label:>28} {ort_us:>16.2f} {1e6 / ort_us:>12.0f} {1.0:>14.1f}")
    print(f"max |GDScript logit - onnxruntime logit| over {rows} observations: {max_abs_diff:.1e}")
    print(f"godot_inference agent_us={agent_us:.1f} group_us_per_agent={group_us:.1f} max_abs_diff={max_abs_diff:.1e}")


if __name__ == "__main__":
    main()
