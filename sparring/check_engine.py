"""``sparring check-engine``: drive one engine through a whole bridge session and report where it departs from the protocol.

The engine author's counterpart of PettingZoo's ``parallel_api_test``:
handshake, reset, steps with random valid actions until episodes end, close,
and (for a launched engine) a clean exit. Every check prints one line; the first
failure names the message field at fault, and the command exits 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gymnasium import spaces

from sparring.envs.base import random_rollout
from sparring.envs.bridge.codec import ProtocolError
from sparring.envs.bridge.env import BridgeEnv
from sparring.envs.bridge.launcher import GameLauncher, describe_exit, new_token
from sparring.envs.bridge.server import BridgeServer, EngineSession, SessionError
from sparring.envs.factory import game_command
from sparring.spec import BehaviourSpec


@dataclass
class EngineReport:
    """What the check saw; ``ok`` only if every stage passed."""

    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def passed(self, what: str) -> None:
        self.lines.append(f"PASS  {what}")

    def failed(self, what: str) -> None:
        self.ok = False
        self.lines.append(f"FAIL  {what}")

    def note(self, what: str) -> None:
        self.lines.append(f"      {what}")


def describe_spec(spec: BehaviourSpec, masked: bool) -> str:
    """One line per behaviour, for the report."""
    obs = ", ".join(f"{k} {box.dtype}{list(box.shape)}" for k, box in spec.observation_components.items())
    act = spec.action_space
    if isinstance(act, spaces.Discrete):
        action = f"Discrete({act.n})"
    elif isinstance(act, spaces.MultiDiscrete):
        action = f"MultiDiscrete({act.nvec.tolist()})"
    else:
        action = f"Box{list(act.shape)}"
    team = f", team {spec.team_id}" if spec.team_id is not None else ""
    return f"{spec.name}: obs {obs} -> {action}{', masked' if masked else ''}{team}"


def check_engine(
    executable: str | None,
    args: Sequence[str] = (),
    *,
    transport: str = "grpc",
    port: int = 0,
    token: str | None = None,
    steps: int = 500,
    timeout: float = 30.0,
    headless_args: Sequence[str] = (),
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> EngineReport:
    """Run the check; with ``executable`` the engine is launched, else it must connect to ``port``."""
    report = EngineReport()

    def say(kind: str, what: str) -> None:
        getattr(report, kind)(what)
        echo(report.lines[-1])

    server = BridgeServer(grpc_port=port if transport == "grpc" else None,
                          tcp_port=port if transport == "tcp" else None, token=token)
    bound = server.grpc_port if transport == "grpc" else server.tcp_port
    launcher = process = None
    try:
        if executable is not None:
            program, program_args = game_command(executable, args)
            launcher = GameLauncher(program, program_args, transport=transport, headless_args=headless_args)
            token = new_token()
            server.add_launch_token(token)
            process = launcher.launch(0, bound, token)
            say("note", f"launched {process.shown_command()}")
        else:
            say("note", f"waiting for an engine on {transport} port {bound} ...")
        try:
            session = _await_engine(server, timeout, token if executable else None, process)
        except (SessionError, TimeoutError) as exc:
            exit_note = f"; the engine {describe_exit(process.poll())}, log {process.log_path}" if process else ""
            say("failed", f"handshake: {exc}{exit_note}")
            return report
        say("passed", f"hello: engine {session.engine_name!r} declared {len(session.specs)} behaviour(s)")
        for name, spec in session.specs.items():
            say("note", describe_spec(spec, name in session.masked))
        _play(BridgeEnv(session, step_timeout=timeout), steps, seed, say)
        if report.ok:
            session.close("check-engine finished")
            say("passed", "close: sent")
            if process is not None:
                code = process.wait(timeout)
                if code == 0:
                    say("passed", "the engine exited with code 0 after Close")
                else:
                    say("failed", f"after Close the engine {describe_exit(code)} (expected exit code 0)")
        else:
            session.close("check-engine found a problem")
    finally:
        if launcher is not None:
            launcher.close()
        server.close()
    return report


def _await_engine(server: BridgeServer, timeout: float, token: str | None, process) -> EngineSession:
    """The engine's session once its handshake is done; a launched engine that exits first ends the wait."""
    deadline = time.monotonic() + timeout
    while True:
        session = server.poll(token, timeout=min(0.1, max(deadline - time.monotonic(), 0)))
        if session is not None:
            return session
        if process is not None and process.poll() is not None:
            raise SessionError("the engine exited before completing its handshake")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no engine completed its handshake within {timeout} s")


def _play(env: BridgeEnv, steps: int, seed: int, say: Callable[[str, str], None]) -> None:
    decisions = terminals = truncated = 0
    stage = "reset"
    try:
        for i, result in enumerate(random_rollout(env, steps, seed)):
            if i == 0:
                say("passed", "reset: observations match the declared specs")
            else:
                decisions += sum(len(p.decisions) for p in result.values())
                terminals += sum(len(p.terminals) for p in result.values())
                truncated += sum(int(p.terminals.truncated.sum()) for p in result.values())
            stage = f"step {i + 1}"
    except (ProtocolError, SessionError, ValueError) as exc:
        say("failed", f"{stage}: {exc}")
        return
    say("passed", f"{steps} steps with random valid actions: {decisions} decisions, "
                  f"{terminals} episode ends ({truncated} truncated)")
    if terminals == 0:
        say("failed", f"no agent ended an episode in {steps} steps; check-engine needs to see terminal agents "
                      "(raise --steps, or shorten the game's episodes)")


def run(options) -> int:
    """``sparring check-engine``, given the CLI's parsed options; returns the exit status."""
    start = time.monotonic()
    report = check_engine(
        options.executable, options.args, transport=options.transport, port=options.port,
        token=options.token, steps=options.steps, timeout=options.timeout,
        headless_args=[options.headless_flag] if options.headless_flag else (),
    )
    verdict = "conforms to" if report.ok else "does not conform to"
    print(f"the engine {verdict} the sparring bridge protocol v1 ({time.monotonic() - start:.1f} s)",
          file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1
