"""Exported policy latency: onnxruntime (1 intra-op thread) against the same policy's torch forward (no_grad, 1 thread).

The default policy network (64x64 tanh MLP) of a 64-float observation and 8
discrete actions, deterministic action, batch 1 and batch 1024, median of many calls.

    python benchmarks/onnx_latency.py

Last line: ``onnx latency_b1_us=<...> torch_ratio_b1=<torch / onnxruntime, batch 1> latency_b1024_us=<...>``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

from sparring.agents.policy import BehaviourPolicy
from sparring.export.exporter import export_policy
from sparring.export.policy import OnnxPolicy
from sparring.spec import BehaviourSpec


def median_us(call, repeats: int) -> float:
    for _ in range(min(200, repeats)):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def main() -> None:
    torch.set_num_threads(1)
    spec = BehaviourSpec("bench", spaces.Box(-1, 1, (64,), np.float32), spaces.Discrete(8))
    policy = BehaviourPolicy(spec, normalize=True).eval()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.onnx"
        export_policy(policy, path)
        onnx_policy = OnnxPolicy(path, threads=1)
        rng = np.random.default_rng(0)
        results = {}
        for batch, repeats in ((1, 20000), (1024, 2000)):
            obs = rng.uniform(-1, 1, (batch, 64)).astype(np.float32)
            mask = np.ones((batch, 8), bool)
            obs_t, mask_t = torch.from_numpy(obs), torch.from_numpy(mask)

            def torch_forward():
                with torch.no_grad():
                    return policy.deterministic(policy.normalize(obs_t), mask_t)[0]

            results[batch] = (median_us(lambda: onnx_policy.predict(obs, action_mask=mask), repeats),
                              median_us(torch_forward, repeats))
    print(f"{'batch':>6} {'onnxruntime us':>15} {'torch us':>10} {'torch/ort':>10}")
    for batch, (ort_us, torch_us) in results.items():
        print(f"{batch:>6} {ort_us:>15.1f} {torch_us:>10.1f} {torch_us / ort_us:>10.2f}")
    b1, b1024 = results[1], results[1024]
    print(f"onnx latency_b1_us={b1[0]:.1f} torch_ratio_b1={b1[1] / b1[0]:.2f} latency_b1024_us={b1024[0]:.1f}")


if __name__ == "__main__":
    main()
