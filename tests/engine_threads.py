"""Engines of tests/engines/ run by the Python SDK in a thread of the test process, against a real bridge server on
loopback: what the bridge tests that need a whole engine session share."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import sparring_engine as se
from sparring.envs.bridge.env import BridgeEnv
from sparring.envs.bridge.server import BridgeServer

ENGINES = Path(__file__).resolve().parent / "engines"


def load_engine(name: str) -> ModuleType:
    """The module ``tests/engines/<name>.py`` (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location(name, ENGINES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def port_of(server: BridgeServer, transport: str) -> int:
    return server.grpc_port if transport == "grpc" else server.tcp_port


def play_in_thread(game, options: se.BridgeOptions, engine_name: str | None = None
                   ) -> tuple[threading.Thread, list[BaseException]]:
    """Run the SDK's loop for ``game`` in a thread; what it raised lands in the returned list."""
    raised: list[BaseException] = []

    def target():
        try:
            se.run(game, options, engine_name=engine_name)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, raised


@contextmanager
def engine_in_thread(server: BridgeServer, transport: str, game, engine_name: str | None = None,
                     **options) -> Iterator[BridgeEnv]:
    """A BridgeEnv over ``transport`` whose engine is ``game`` run by ``se.run`` in a thread (``options``: more
    :class:`se.BridgeOptions`, a token or a CA file); on leaving, the session is closed and the engine must have
    ended cleanly."""
    thread, raised = play_in_thread(game, se.BridgeOptions(port_of(server, transport), transport=transport, **options),
                                    engine_name)
    env = BridgeEnv(server.accept(timeout=10), step_timeout=10)
    yield env
    env.close()
    thread.join(10)
    assert not thread.is_alive() and not raised
