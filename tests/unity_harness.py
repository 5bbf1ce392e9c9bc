"""What the Unity tests share: the stand-in player (engines/unity/) built like a Unity Linux build, and ports.

``UnityEnvironment`` binds ``base_port + worker_id`` and refuses a port in use,
so every test takes fresh ports from the OS.
"""

from __future__ import annotations

import importlib.util
import socket
from contextlib import ExitStack
from pathlib import Path

BUILD = Path(__file__).resolve().parents[1] / "engines" / "unity" / "build.py"
_spec = importlib.util.spec_from_file_location("unity_standin_build", BUILD)
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)

SEEKER, MOVER = "Seeker?team=0", "Mover?team=1"
PARKER = "Parker"  # only with --hybrid
DISTUTILS_WARNING = "ignore:distutils Version classes are deprecated:DeprecationWarning"
"""mlagents_envs compares versions with distutils' StrictVersion, which warns on every handshake."""


def build_player(out_dir: Path) -> str:
    """Build the stand-in into ``out_dir``; returns the file name to give ``UnityEnvironment`` (no suffix)."""
    return str(_build.build_standin(out_dir).with_suffix(""))


def free_ports(count: int = 1) -> int:
    """A base port such that ``count`` consecutive ports from it are free now."""
    while True:
        with ExitStack() as stack:
            first = stack.enter_context(socket.socket())
            first.bind(("localhost", 0))
            base = first.getsockname()[1]
            try:
                for offset in range(1, count):
                    stack.enter_context(socket.socket()).bind(("localhost", base + offset))
            except OSError:
                continue
            return base
