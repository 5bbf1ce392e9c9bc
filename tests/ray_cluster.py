"""A real Ray cluster on this machine for the tests: each node a ``ray start --block`` process of its own.

``--block`` keeps a node's processes under one parent, so stopping that parent takes exactly that node
down (a machine lost mid-run), and the other nodes, and any cluster a developer runs beside the tests,
are left alone (``ray stop`` would kill every Ray process on the machine).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    """A head node and any number of worker nodes, each with its own CPUs and custom resources."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def start_node(self, num_cpus: int, resources: dict[str, float] | None = None) -> subprocess.Popen:
        """Start a node (the first is the head) and wait until the cluster counts it."""
        head = not self.nodes
        where = ["--head", "--port", str(self.port), "--include-dashboard=false"] if head else ["--address", self.address]
        command = [RAY, "start", *where, "--num-cpus", str(num_cpus), "--resources", json.dumps(resources or {}),
                   "--disable-usage-stats", "--block"]
        log = (self.log_dir / f"node{len(self.nodes)}.log").open("w")
        # Ray's token authentication is on once ~/.ray/auth_token exists (a ray.init() elsewhere may write it);
        # these loopback test nodes go without, so every client of the tests can join.
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.nodes.append(node)
        self._await_nodes(sum(n.poll() is None for n in self.nodes))
        return node

    def stop_node(self, node: subprocess.Popen) -> None:
        """Take a node down with every process on it at once, as a machine that is switched off (a polite stop
        would let the node drain its actors first)."""
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()

    def alive_nodes(self) -> int:
        probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False);"
                 "print(sum(n['Alive'] for n in ray.nodes()))")
        done = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True, text=True, timeout=60)
        return int(done.stdout.strip() or 0)

    def _await_nodes(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(n.poll() is not None for n in self.nodes if n is self.nodes[-1]):
                raise RuntimeError(f"ray start failed; see {self.log_dir}")
            try:
                if self.alive_nodes() >= count:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the Ray cluster did not reach {count} nodes within {timeout} s; see {self.log_dir}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.poll() is None:
                self.stop_node(node)
