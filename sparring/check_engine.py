"""``sparring check-engine``: drive one engine through a whole bridge session and report where it departs from the protocol.

The engine author's counterpart of PettingZoo's ``parallel_api_test``. In order:
handshake; the first Reset; steps with random valid actions until episodes end,
where behaviours with no deciding agent get an empty action entry on every
other step and none on the rest (both are allowed, so an engine must take
both); a second Reset in the middle of episodes; more steps; Close; and, for a
launched engine, a clean exit. Along the way the report names what it saw of
the cases engines most often get wrong: episode ends, truncation, action masks,
agents that join after the first decisions, and steps where a behaviour has no
deciding agent; of what protocol version 2 added: groups and group rewards,
game statistics, and an environment parameter sent with an Actions in the middle
of episodes; and of version 3's played actions, for agents the game plays itself
(every message is validated as the trainer validates it). Every
check prints one line; the first failure names the message field at fault, and
the command exits 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from gymnasium import spaces

from sparring.envs.base import GameStats, StepResult, check_step_result, random_actions
from sparring.envs.bridge.codec import ProtocolError
from sparring.envs.bridge.env import BridgeEnv
from sparring.envs.bridge.launcher import GameLauncher, connect_host, describe_exit, new_token
from sparring.envs.bridge.server import BridgeServer, EngineSession, SessionError, host_port
from sparring.envs.factory import game_command
from sparring.spec import BehaviourSpec, empty_actions


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
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    steps: int = 500,
    timeout: float = 30.0,
    headless_args: Sequence[str] = (),
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> EngineReport:
    """Run the check; with ``executable`` the engine is launched, else it must connect to ``host:port``.

    ``tls_cert`` and ``tls_key`` (PEM) make the check listen over TLS only, as a trainer with those config keys
    does: how an engine on another machine is checked (beyond loopback, with ``token`` too). A launched engine is
    told to trust the certificate (``--sparring-ca``).
    """
    report = EngineReport()

    def say(kind: str, what: str) -> None:
        getattr(report, kind)(what)
        echo(report.lines[-1])

    server = BridgeServer(host, grpc_port=port if transport == "grpc" else None,
                          tcp_port=port if transport == "tcp" else None, token=token, tls_cert=tls_cert, tls_key=tls_key)
    bound = server.grpc_port if transport == "grpc" else server.tcp_port
    over = f"{transport}{' over TLS' if server.tls_cert else ''}"
    launcher = process = None
    try:
        if executable is not None:
            program, program_args = game_command(executable, args)
            launcher = GameLauncher(program, program_args, host=connect_host(host), transport=transport,
                                    ca_file=server.tls_cert, headless_args=headless_args)
            token = new_token()
            server.add_launch_token(token)
            process = launcher.launch(0, bound, token)
            say("note", f"launched {process.shown_command()}")
        else:
            say("note", f"waiting for an engine on {over} at {host_port(host, bound)} ...")
        try:
            session = _await_engine(server, timeout, token if executable else None, process)
        except (SessionError, TimeoutError) as exc:
            exit_note = f"; the engine {describe_exit(process.poll())}, log {process.log_path}" if process else ""
            say("failed", f"handshake: {exc}{exit_note}")
            return report
        say("passed", f"hello: engine {session.engine_name!r} (protocol version {session.protocol_version}) declared "
                      f"{len(session.specs)} behaviour(s)")
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


@dataclass
class _Seen:
    """What the steps showed of the cases engines most often get wrong."""

    decisions: int = 0
    terminals: int = 0
    truncated: int = 0
    masked: int = 0
    joined_late: int = 0
    idle_steps: int = 0  # behaviour-steps with no deciding agent
    empty_entries: int = 0  # of those, answered with an empty action entry (the rest: the entry left out)
    known: dict[str, set[int]] = field(default_factory=dict)
    grouped_rows: int = 0  # decision and terminal rows of agents in a group
    group_rewards: int = 0  # of those, rows with a group reward
    groups: set[tuple[str, int]] = field(default_factory=set)
    left_groups: int = 0  # agents whose episode ended in a group whose other members played on
    stats: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (aggregation, values)
    played: dict[str, int] = field(default_factory=dict)  # behaviour -> actions the game reported playing itself

    def add(self, result: StepResult, first: bool = False) -> None:
        for name, part in result.items():
            self._add_groups(name, part)
            if part.played is not None and len(part.played):
                self.played[name] = self.played.get(name, 0) + len(part.played)
            ids = set(part.decisions.agent_ids.tolist())
            known = self.known.setdefault(name, set())
            if not first:
                self.joined_late += len(ids - known - set(part.terminals.agent_ids.tolist()))
            known |= ids | set(part.terminals.agent_ids.tolist())
            self.decisions += len(part.decisions)
            self.terminals += len(part.terminals)
            self.truncated += int(part.terminals.truncated.sum())
            self.masked += len(part.decisions) if part.decisions.action_mask is not None else 0

    def _add_groups(self, name: str, part) -> None:
        for rows in (part.decisions, part.terminals):
            grouped = rows.group_ids != 0
            self.grouped_rows += int(grouped.sum())
            self.group_rewards += int((rows.group_rewards != 0).sum())
            self.groups.update((name, int(g)) for g in np.unique(rows.group_ids[grouped]))
        ended = part.terminals.group_ids[part.terminals.group_ids != 0]
        playing_on = part.decisions.group_ids[~np.isin(part.decisions.agent_ids, part.terminals.agent_ids)]
        self.left_groups += int(np.isin(ended, playing_on).sum())

    def add_stats(self, stats: GameStats) -> None:
        for key, values in stats.items():
            aggregation, count = self.stats.get(key, (values[0][1], 0))
            self.stats[key] = (aggregation, count + len(values))


PROBE_PARAMETER = "sparring_check_engine"
"""The environment parameter check-engine sends with an Actions mid-episode (a game ignores names it does not read)."""


def _play(env: BridgeEnv, steps: int, seed: int, say: Callable[[str, str], None]) -> None:
    """The session's stages, each reported by name; a failure ends the check there."""
    rng = np.random.default_rng(seed)
    seen = _Seen()
    stage = "reset"
    probe_step = steps // 2 + 1
    try:
        result = env.reset(seed=seed)
        check_step_result(env.specs, result)
        seen.add(result, first=True)
        say("passed", "reset: step 0, observations match the declared specs, no terminals")
        for i in range(steps):
            stage = f"step {i + 1}"
            if i + 1 == probe_step:
                env.set_parameters({PROBE_PARAMETER: 1.0})
            result = env.step(_random_actions(env, result, rng, seen))
            check_step_result(env.specs, result)
            seen.add(result)
        say("passed", f"{steps} steps with random valid actions: {seen.decisions} decisions, "
                      f"{seen.terminals} episode ends")
        say("passed", f"environment parameters: {PROBE_PARAMETER!r} sent with the Actions of step {probe_step}, "
                      "the engine stepped on")
        stage = "second reset (in the middle of episodes)"
        result = env.reset(seed=seed + 1)
        check_step_result(env.specs, result)
        say("passed", f"{stage}: answered at step 0 with {sum(len(p.decisions) for p in result.values())} "
                      "decisions and no terminals for the episodes it cut off")
        for i in range(min(steps, 20)):
            stage = f"step {i + 1} after the second reset"
            result = env.step(_random_actions(env, result, rng, seen))
            check_step_result(env.specs, result)
        say("passed", f"{min(steps, 20)} steps after the second reset")
    except (ProtocolError, SessionError, ValueError) as exc:
        say("failed", f"{stage}: {exc}")
        return
    seen.add_stats(env.drain_stats())
    _report_cases(env, seen, steps, say)


def _random_actions(env: BridgeEnv, result: StepResult, rng: np.random.Generator, seen: _Seen) -> dict[str, np.ndarray]:
    """Random valid actions; a behaviour with no deciding agent gets an empty entry every other time it has none."""
    actions = {}
    for name, part in result.items():
        n = len(part.decisions)
        if n:
            actions[name] = random_actions(env.specs[name], n, part.decisions.action_mask, rng)
            continue
        if seen.idle_steps % 2 == 0:
            seen.empty_entries += 1
            actions[name] = empty_actions(env.specs[name])
        seen.idle_steps += 1
    return actions


def _report_cases(env: BridgeEnv, seen: _Seen, steps: int, say: Callable[[str, str], None]) -> None:
    if seen.terminals == 0:
        say("failed", f"episode ends: no agent ended an episode in {steps} steps; check-engine needs to see terminal "
                      "agents (raise --steps, or shorten the game's episodes)")
    else:
        say("passed", f"episode ends: {seen.terminals}, each agent's next decision starting its next episode")
    say("note", f"truncation: {seen.truncated} of the episode ends were time limits (terminal_truncated)"
        if seen.truncated else "truncation: not seen (fine if the game has no time limit)")
    masked = sorted(env.session.masked)
    say("note", f"action masks: {seen.masked} decisions of {masked} carried masks, every branch allowing an action"
        if masked else "action masks: none declared")
    say("note", f"agents joining after the first decisions: {seen.joined_late}" if seen.joined_late else
        "agents joining after the first decisions: not seen")
    say("note", f"behaviours with no deciding agent: {seen.idle_steps} times; {seen.empty_entries} answered with an "
                f"empty action entry, {seen.idle_steps - seen.empty_entries} with the entry left out, both accepted"
        if seen.idle_steps else "behaviours with no deciding agent: not seen (every behaviour decided every step)")
    say("note", f"groups: {seen.grouped_rows} rows of agents in {len(seen.groups)} groups, {seen.group_rewards} with a "
                f"group reward; {seen.left_groups} agents ended their episode while their group played on"
        if seen.groups else "groups: none (fine if no agents share rewards)")
    say("note", "statistics: " + ", ".join(f"{key} ({aggregation}, {count} values)"
                                           for key, (aggregation, count) in seen.stats.items())
        if seen.stats else "statistics: none recorded")
    say("note", "played actions: " + ", ".join(f"{count} of {name!r}" for name, count in seen.played.items()) +
        " reported for agents the game plays itself" if seen.played else
        "played actions: none reported (needed only for `sparring record`, or agents a person or heuristic plays)")


def run(options) -> int:
    """``sparring check-engine``, given the CLI's parsed options; returns the exit status."""
    start = time.monotonic()
    try:
        report = check_engine(
            options.executable, options.args, transport=options.transport, host=options.host, port=options.port,
            token=options.token, tls_cert=options.tls_cert, tls_key=options.tls_key, steps=options.steps,
            timeout=options.timeout, headless_args=[options.headless_flag] if options.headless_flag else (),
        )
    except ValueError as exc:  # no server for these options: beyond loopback without a token or TLS, a bad certificate
        print(f"sparring: error: check-engine: {exc}", file=sys.stderr)
        return 2
    verdict = "conforms to" if report.ok else "does not conform to"
    print(f"the engine {verdict} the sparring bridge protocol v1 ({time.monotonic() - start:.1f} s)",
          file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1
