"""Game engines over the bridge as sparring envs: one session, or a fleet of engines that survives crashes.

- :class:`BridgeEnv` is one engine session as a :class:`~sparring.envs.base.MultiAgentEnv`:
  ``reset`` sends Reset, ``step`` sends Actions, and every reply is decoded and
  validated against the engine's declared specs. An invalid reply ends the
  session: the engine is told which field was wrong, and a ``ProtocolError``
  naming it is raised.
- :class:`MultiEngineEnv` is what the trainer uses: N engine slots (copies it
  launches, or engines that connect themselves, e.g. from an editor) presented as
  one env, stepped concurrently, with agent ids ``slot * 2**32 + local id`` (the
  :class:`~sparring.envs.vector.VectorEnv` convention). Game builds crash and
  hang; when an engine dies, disconnects, stops answering within ``step_timeout``
  or sends an invalid message, its agents are reported in ``BehaviourStep.lost``,
  the failure is logged and counted (:attr:`MultiEngineEnv.metrics`), the game is
  killed and relaunched with exponential backoff, and its agents rejoin once it
  has connected and been reset. The other engines keep stepping meanwhile. A slot
  that fails more than ``max_restarts`` times raises :class:`EngineFailure`.

Launching two copies of a Python game::

    env = MultiEngineEnv.launch(sys.executable, num_engines=2, transport="tcp",
                                args=["engines/python/examples/arena.py"])
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparring.envs.base import Actions, BehaviourStep, GameStats, MultiAgentEnv, StepResult, merge_stats
from sparring.envs.bridge import codec
from sparring.envs.bridge.codec import ProtocolError
from sparring.envs.bridge.launcher import GameLauncher, GameProcess, connect_host, new_token
from sparring.envs.bridge.parameters import EngineParameters, checked_parameters
from sparring.envs.bridge.server import (
    BridgeServer,
    EngineError,
    EngineSession,
    SessionClosed,
    SessionError,
    SessionTimeout,
    host_port,
)
from sparring.envs.parameters import ParameterValue
from sparring.envs.supervision import EngineFailure, LiveAgents, RestartBudget, lost_result
from sparring.envs.vector import VectorEnv
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import DEFAULT_GRPC_PORT, DEFAULT_TCP_PORT
from sparring.spec import BehaviourSpec, empty_actions

log = logging.getLogger("sparring.bridge")

ENGINE_FAILURES = (SessionError, ProtocolError)
"""What an engine can do wrong: end, hang or break the protocol. Anything else is the trainer's own bug."""


class BridgeEnv(MultiAgentEnv):
    """One engine session as a multi-agent env.

    Args:
        session: a session from :meth:`BridgeServer.accept`.
        step_timeout: seconds the engine has to answer one Actions.
        reset_timeout: seconds it has to answer a Reset (levels load); default ``step_timeout``.
        environment_parameters: numbers or samplers, until :meth:`set_parameters` changes them.

    ``reset``/``step`` are ``send_*`` followed by :meth:`receive`; calling the halves
    separately lets a caller keep many engines busy at once. Step numbers: the
    Observations answering a Reset carry step 0; Actions carry the step of the
    Observations they answer, and the reply carries that step + 1.

    Environment parameters travel in every Reset, and in the next Actions whenever one
    changed: set anew, or a sampler drawn again once episodes started with its last draw
    (:class:`~sparring.envs.bridge.parameters.EngineParameters`). The game statistics of
    every reply wait in :meth:`drain_stats`.

    In a recording session (the server was made with ``recording=True``; ``session.recording``)
    the engine plays every agent itself: ``step`` still takes one row per deciding agent, as
    the env API says (:func:`~sparring.spec.empty_actions` will do), and sends none of them;
    the engine's own actions come back in each behaviour's ``played``.
    """

    def __init__(
        self,
        session: EngineSession,
        step_timeout: float = 60.0,
        reset_timeout: float | None = None,
        environment_parameters: Mapping[str, ParameterValue] | None = None,
    ) -> None:
        self.session = session
        self.specs: dict[str, BehaviourSpec] = dict(session.specs)
        self.step_timeout = step_timeout
        self.reset_timeout = reset_timeout if reset_timeout is not None else step_timeout
        self.parameters = EngineParameters(environment_parameters)
        self._stats: GameStats = {}
        self._aggregations: dict[str, str] = {}  # each statistic's aggregation, fixed by its first value
        self._step: int | None = None  # step number of the last Observations; None before the first reset
        self._expected: int | None = None  # step number the pending reply must carry
        self._deadline = 0.0
        self._counts: dict[str, int] = {}
        self._live = LiveAgents(list(self.specs))
        # Per behaviour: dtype and per-row shape the engine decodes actions with.
        self._action_formats = {name: _action_format(spec) for name, spec in self.specs.items()}

    def __repr__(self) -> str:
        return f"<BridgeEnv {self.session!r}>"

    @property
    def live_agents(self) -> dict[str, np.ndarray]:
        """Local ids of the agents whose episode is under way, per behaviour (sorted)."""
        return self._live.snapshot()

    def reset(self, seed: int | None = None) -> StepResult:
        self.send_reset(seed)
        return self.receive()

    def step(self, actions: Actions) -> StepResult:
        self.send_step(actions)
        return self.receive()

    def send_reset(self, seed: int | None = None) -> None:
        """Send Reset; ``seed=None`` draws a fresh one (the protocol always carries a seed)."""
        if seed is None:
            seed = secrets.randbits(62)
        message = pb.TrainerMessage(reset=pb.Reset(seed=seed, environment_parameters=self.parameters.at_reset(seed)))
        self.session.send(message, self.reset_timeout)
        self._expected = 0
        self._deadline = time.monotonic() + self.reset_timeout

    def check_actions(self, actions: Actions) -> dict[str, np.ndarray]:
        """``actions`` in the dtypes the protocol carries, after checking one row per deciding agent.

        A wrong batch is the trainer's mistake, not the engine's: ``ValueError`` here,
        before anything is sent.
        """
        if self._step is None:
            raise RuntimeError("BridgeEnv.step() called before reset()")
        out = {}
        for name, batch in actions.items():
            fmt = self._action_formats.get(name)
            if fmt is None:
                raise ValueError(f"actions for unknown behaviour {name!r}; this engine has {list(self.specs)}")
            dtype, row_shape = fmt
            batch = np.asarray(batch, dtype)
            n = self._counts.get(name, 0)
            if batch.shape != (n, *row_shape):
                raise ValueError(f"actions for behaviour {name!r}: expected shape {(n, *row_shape)} "
                                 f"(one row per deciding agent), got {batch.shape}")
            out[name] = batch
        missing = [name for name, n in self._counts.items() if n and name not in out]
        if missing:
            raise ValueError(f"actions missing for behaviours {missing}, which have deciding agents")
        return out

    def send_step(self, actions: Actions, checked: bool = False) -> None:
        """Send Actions for the last decisions (``checked``: already passed through :meth:`check_actions`)."""
        if not checked:
            actions = self.check_actions(actions)
        if self.session.recording:
            actions = {}  # the engine plays every agent itself: the Actions only say "go on"
        self.session.send(codec.serialize_actions(self._step, actions, self.parameters.changes()), self.step_timeout)
        self._expected = self._step + 1
        self._deadline = time.monotonic() + self.step_timeout

    def receive(self, deadline: float | None = None) -> StepResult:
        """The engine's answer to the last ``send_*``, decoded and validated.

        ``deadline`` (``time.monotonic()``) defaults to the send time plus the timeout.
        Raises :class:`SessionError` (timeout, disconnect, Error from the engine) or
        ``ProtocolError`` naming the field (the engine is told too); either way the
        session is over.
        """
        if self._expected is None:
            raise RuntimeError("BridgeEnv.receive() without a Reset or Actions sent")
        expected, self._expected = self._expected, None
        message = self.session.receive_until(self._deadline if deadline is None else deadline)
        observations = message.observations
        try:
            if observations.step != expected:
                raise ProtocolError("observations.step", f"expected step {expected}, got {observations.step}")
            result = codec.decode_observations(observations, self.specs, self.session.masked)
            if expected == 0:
                _check_reset_answer(observations)
            stats = codec.decode_stats(observations, self._aggregations)
        except ProtocolError as exc:
            self.session.fail(str(exc), exc.field)
            detail = str(exc).removeprefix(f"{exc.field}: ")
            raise ProtocolError(exc.field, f"{detail} (from {self.session.name})") from None
        self._step = expected
        self._live.update(result, fresh=expected == 0)
        self._counts = {name: len(part.decisions) for name, part in result.items()}
        if expected == 0 or any(len(part.terminals) for part in result.values()):
            self.parameters.episodes_started()
        for key, values in stats.items():
            self._stats.setdefault(key, []).extend(values)
        return result

    def set_parameters(self, parameters: Mapping[str, ParameterValue]) -> None:
        """New parameter values (numbers or samplers), sent with the next Actions or Reset."""
        self.parameters.set(parameters)

    def drain_stats(self) -> GameStats:
        stats, self._stats = self._stats, {}
        return stats

    def close(self) -> None:
        self.session.close("the env was closed")


def _check_reset_answer(observations: pb.Observations) -> None:
    """The answer to a Reset starts every episode afresh: the episodes the Reset cut off are not reported, neither
    their ends nor the actions played at their last decisions."""
    for i, entry in enumerate(observations.behaviours):
        for field, what in (("terminal_ids", "terminals"), ("played_ids", "played actions")):
            tensor = getattr(entry, field)
            if entry.HasField(field) and tensor.shape and tensor.shape[0]:
                raise ProtocolError(f"observations.behaviours[{i}].{field}",
                                    f"the answer to a Reset has no {what}: a Reset ends every episode under way "
                                    "without reporting it")


def _action_format(spec: BehaviourSpec) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype and per-row shape of a behaviour's actions on the wire (sparring.spec's conventions)."""
    rows = empty_actions(spec)
    return rows.dtype, rows.shape[1:]


def _server(transport: str, host: str, port: int, token: str | None,
            server_options: Mapping[str, Any] | None) -> BridgeServer:
    """A server listening on ``port`` for ``transport`` only."""
    _check_transport(transport)
    return BridgeServer(host, grpc_port=port if transport == "grpc" else None,
                        tcp_port=port if transport == "tcp" else None, token=token, **(server_options or {}))


def _check_transport(transport: str) -> None:
    if transport not in ("grpc", "tcp"):
        raise ValueError(f"transport must be 'grpc' or 'tcp', got {transport!r}")


@dataclass
class _Slot:
    """One engine position. States: idle (backing off) -> starting (launched, awaiting its
    handshake) -> ready (connected) -> resetting (Reset sent) -> up (stepping)."""

    index: int
    state: str = "idle"
    env: BridgeEnv | None = None
    process: GameProcess | None = None
    token: str | None = None
    last_failure: str = ""
    retry_at: float = 0.0
    connect_deadline: float = math.inf
    pending: bool = False  # a reply is owed in this round


class MultiEngineEnv(VectorEnv):
    """N engines (launched copies of a game, or engines that connect themselves) as one env.

    Args:
        server: where engines connect.
        num_engines: number of slots.
        launcher: starts a copy per slot (and again after a failure); ``None``: editor
            mode, slots are filled by engines that connect with the server's token,
            and a failed slot waits for the next one.
        transport: which of the server's ports launched copies are told (``"grpc"`` / ``"tcp"``).
        step_timeout: seconds an engine has to answer one step before it counts as hung.
        reset_timeout: seconds to answer a Reset; default ``step_timeout``.
        connect_timeout: seconds a launched copy has to start and complete its handshake.
        max_restarts: relaunches allowed per slot over the env's life; one more failure raises.
        restart_backoff: seconds before the first relaunch of a slot; doubles with each
            further relaunch of that slot, up to ``max_backoff``.
        environment_parameters: numbers or samplers every engine starts from, until :meth:`set_parameters`
            changes them (each engine draws its own samples).
        owns_server: close ``server`` with this env.

    Attributes:
        metrics: counters, for logs and dashboards: ``restarts``, ``crashes`` (process
            died), ``disconnects``, ``timeouts``, ``invalid_messages``, ``engine_errors``,
            ``connect_failures``, ``lost_agents``.
        failures: the most recent failure descriptions (up to 100), oldest first.
    """

    copies_seat_agents = False  # game engines declare sides by team ids; they seat nobody

    def __init__(
        self,
        server: BridgeServer,
        num_engines: int = 1,
        launcher: GameLauncher | None = None,
        *,
        transport: str = "grpc",
        step_timeout: float = 30.0,
        reset_timeout: float | None = None,
        connect_timeout: float = 60.0,
        max_restarts: int = 5,
        restart_backoff: float = 0.5,
        max_backoff: float = 30.0,
        environment_parameters: Mapping[str, ParameterValue] | None = None,
        owns_server: bool = False,
        close_timeout: float = 3.0,
    ) -> None:
        if num_engines < 1:
            raise ValueError(f"num_engines must be at least 1, got {num_engines}")
        _check_transport(transport)
        port = server.grpc_port if transport == "grpc" else server.tcp_port
        if port is None:
            raise ValueError(f"the server does not listen for {transport}; enable {transport}_port")
        self.server = server
        self.launcher = launcher
        self.transport = transport
        self.port = port
        self.step_timeout = step_timeout
        self.reset_timeout = reset_timeout
        self.connect_timeout = connect_timeout
        self.environment_parameters = checked_parameters(environment_parameters or {})
        self.close_timeout = close_timeout
        self._stats_of_failed: list[GameStats] = []  # recorded by sessions that ended since the last drain
        self._owns_server = owns_server
        self.budget = RestartBudget(
            num_engines, ("crashes", "disconnects", "timeouts", "invalid_messages", "engine_errors", "connect_failures"),
            max_restarts, restart_backoff, max_backoff, log)
        self.metrics = self.budget.metrics
        self.failures = self.budget.failures
        self.slots = [_Slot(i) for i in range(num_engines)]
        self._initialised = False
        self._reset_seed: int | None = None
        try:
            self._connect_all()
            VectorEnv.__init__(self, [slot.env.specs for slot in self.slots])
            self._empty = {name: BehaviourStep.empty(spec) for name, spec in self.specs.items()}
            self._initialised = True
        except BaseException:
            self.close()
            raise

    @classmethod
    def launch(
        cls,
        executable: str,
        num_engines: int = 1,
        args: Sequence[str] = (),
        *,
        transport: str = "grpc",
        headless_args: Sequence[str] = (),
        log_dir: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        server_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> MultiEngineEnv:
        """Start a server (on a free port unless ``port``), launch ``num_engines`` copies of ``executable``,
        and wait for them. Each copy authenticates with its own launch token; ``token`` is only needed to
        listen beyond loopback. ``server_options`` are :class:`BridgeServer`'s (``max_message_bytes``,
        ``handshake_timeout``, ``limits``, ``tls_cert`` and ``tls_key``: then the copies are told to trust
        the certificate, ``--sparring-ca``); further ``options`` are the constructor's."""
        server = _server(transport, host, port, token, server_options)
        try:
            launcher = GameLauncher(executable, args, host=connect_host(host), transport=transport,
                                    ca_file=server.tls_cert, headless_args=headless_args, log_dir=log_dir, env=env,
                                    cwd=cwd)
            return cls(server, num_engines, launcher, transport=transport, owns_server=True, **options)
        except BaseException:
            server.close()
            raise

    @classmethod
    def listen(
        cls,
        num_engines: int = 1,
        *,
        transport: str = "grpc",
        host: str = "127.0.0.1",
        port: int | None = None,
        token: str | None = None,
        connect_timeout: float = 600.0,
        server_options: Mapping[str, Any] | None = None,
        announce: Callable[[str], None] | None = None,
        **options: Any,
    ) -> MultiEngineEnv:
        """Editor mode: wait for ``num_engines`` engines to connect (default ports 5105 gRPC, 5106 TCP).

        ``announce`` is told, once the server listens, where engines must connect and whether they need a
        token (the CLI prints it); by default it is logged."""
        if port is None:
            port = DEFAULT_GRPC_PORT if transport == "grpc" else DEFAULT_TCP_PORT
        server = _server(transport, host, port, token, server_options)
        bound = server.grpc_port if transport == "grpc" else server.tcp_port
        needs = ("engines must send the configured token (--sparring-token, or the game's setting)" if token else
                 "no token needed on loopback (any token is accepted)")
        if server.tls_cert is not None:
            needs += (f"; over TLS only, trusting the CA that signed {server.tls_cert} "
                      "(--sparring-ca, or the game's setting)")
        (announce or log.info)(f"waiting for {num_engines} engine(s) to connect over {transport} to "
                               f"{host_port(host, bound)}; {needs}; start the game(s) now "
                               f"(up to {connect_timeout:g} s)")
        try:
            return cls(server, num_engines, None, transport=transport, owns_server=True,
                       connect_timeout=connect_timeout, **options)
        except BaseException:
            server.close()
            raise

    # -- what the trainer sees ----------------------------------------------

    @property
    def restarts(self) -> int:
        """Relaunches so far, over all slots."""
        return self.metrics["restarts"]

    @property
    def processes(self) -> list[GameProcess | None]:
        """Each slot's current game process (``None`` while it has none, or in editor mode)."""
        return [slot.process for slot in self.slots]

    @property
    def engines_up(self) -> int:
        """Slots currently stepping."""
        return sum(slot.state == "up" for slot in self.slots)

    def set_parameters(self, parameters: Mapping[str, ParameterValue]) -> None:
        """Every engine, and every engine that connects later, gets the new values (samplers drawn per engine)."""
        parameters = checked_parameters(parameters)
        self.environment_parameters.update(parameters)
        for slot in self.slots:
            if slot.env is not None:
                slot.env.set_parameters(parameters)

    def drain_stats(self) -> GameStats:
        """Every engine's statistics since the last call, those of sessions that ended meanwhile included."""
        stats = merge_stats([*self._stats_of_failed, *(slot.env.drain_stats() for slot in self.slots if slot.env)])
        self._stats_of_failed.clear()
        return stats

    def _run_copies(self, method: str, args: list[Any]) -> list[StepResult]:
        if method == "step":
            # A malformed batch is the trainer's bug: refuse it before anything is sent.
            args = [slot.env.check_actions(a) if slot.state == "up" else None for slot, a in zip(self.slots, args)]
        try:
            return self._round(method, args)
        except BaseException:
            # EngineFailure, Ctrl-C or a bug mid-round: engines are out of step; none can be trusted.
            self.close()
            raise

    def _round(self, method: str, args: list[Any]) -> list[StepResult]:
        """Send to every live engine, tend the others, then collect every answer owed."""
        lost: list[dict[str, np.ndarray]] = [{} for _ in self.slots]
        results: list[StepResult | None] = [None] * len(self.slots)
        if method == "reset":
            self._reset_seed = args[0]
        for slot in self.slots:
            if method == "reset" and slot.state in ("ready", "up"):
                self._send(slot, lost, lambda env: env.send_reset(args[slot.index]))
            elif method == "step" and slot.state == "up":
                self._send(slot, lost, lambda env: env.send_step(args[slot.index], checked=True))
        self._tend()
        while not any(slot.pending for slot in self.slots) and not any(lost):
            # Every engine is down: wait for one to come back (bounded by max_restarts).
            time.sleep(0.02)
            self._tend()
        for slot in self.slots:
            if slot.pending:
                slot.pending = False
                try:
                    results[slot.index] = slot.env.receive()
                    slot.state = "up"
                except ENGINE_FAILURES as exc:
                    lost[slot.index] = self._fail(slot, exc)
        return [result if result is not None else self._lost_result(lost[i]) for i, result in enumerate(results)]

    def _send(self, slot: _Slot, lost: list, send) -> None:
        try:
            send(slot.env)
            slot.pending = True
            if slot.state == "ready":
                slot.state = "resetting"
        except ENGINE_FAILURES as exc:
            lost[slot.index] = self._fail(slot, exc)

    def _lost_result(self, lost: dict[str, np.ndarray]) -> StepResult:
        return lost_result(self.specs, lost) if lost else self._empty

    # -- keeping slots filled -------------------------------------------------

    def _connect_all(self) -> None:
        """Fill every slot (launching, and relaunching what fails) before the first reset."""
        for slot in self.slots:
            self._start(slot)
        while not all(slot.state == "ready" for slot in self.slots):
            self._tend()
            time.sleep(0.01)

    def _start(self, slot: _Slot) -> None:
        now = time.monotonic()
        if self.launcher is not None:
            slot.token = new_token()
            self.server.add_launch_token(slot.token)
            slot.process = self.launcher.launch(slot.index, self.port, slot.token)
            slot.connect_deadline = now + self.connect_timeout
        else:
            # Editor mode: the first connection is awaited connect_timeout; a reconnection as long as it takes.
            slot.connect_deadline = now + self.connect_timeout if not self._initialised else math.inf
        slot.state = "starting"

    def _tend(self) -> None:
        """Advance every slot that is not stepping: relaunch after backoff, take its session, reset it."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.state == "idle" and now >= slot.retry_at:
                self._start(slot)
            if slot.state != "starting":
                continue
            session = self.server.poll(slot.token, 0)
            if session is not None:
                if self.server.run_specs is None:  # the first engine's behaviours are the run's; the server
                    self.server.run_specs = (dict(session.specs), set(session.masked))  # refuses others from now
                difference = codec.spec_difference(*self.server.run_specs, session.specs, set(session.masked))
                if difference:  # it completed its handshake before the run's specs were known
                    session.fail(f"this engine's behaviours differ from the run's: {difference}", "hello.behaviours")
                    self._fail(slot, f"{session.name} declared different behaviours: {difference}", "connect_failures")
                    continue
                slot.env = BridgeEnv(session, self.step_timeout, self.reset_timeout, self.environment_parameters)
                slot.state = "ready"
                if self._initialised:  # rejoining: reset it now; its first decisions come in this round
                    seed = None if self._reset_seed is None else (
                        self._reset_seed + slot.index + len(self.slots) * self.budget.restarts[slot.index])
                    self._send(slot, [{}] * len(self.slots), lambda env: env.send_reset(seed))
            elif slot.process is not None and slot.process.poll() is not None:
                self._fail(slot, slot.process.describe("before connecting"), "connect_failures")
            elif now > slot.connect_deadline:
                why = f"no engine connected on {self.transport} port {self.port} within {self.connect_timeout} s"
                if self.launcher is None:  # editor mode, before the run: nobody is coming; waiting again won't help
                    raise EngineFailure(f"engine slot {slot.index}: {why} (start the game, or raise connect_timeout)",
                                        slot.index, why)
                self._fail(slot, why, "connect_failures")

    def _fail(self, slot: _Slot, error: BaseException | str, kind: str | None = None) -> dict[str, np.ndarray]:
        """Record a slot's failure, kill its game, schedule the relaunch; its live agents are returned as lost."""
        lost = slot.env.live_agents if slot.env is not None and slot.state == "up" else {}
        reason = str(error)
        process = slot.process
        if kind is None:
            kind = self._classify(error, process)
        if process is not None:
            if process.poll() is None:
                reason += f"; {process.describe()}, killed"
            elif kind != "connect_failures":  # those describe the process already
                reason += f"; {process.describe()}"
            process.kill()
        if slot.env is not None:
            slot.env.session.close("the trainer dropped this engine")
            self._stats_of_failed.append(slot.env.drain_stats())
        if slot.token is not None:
            self.server.remove_launch_token(slot.token)
        self.budget.record(slot.index, kind, reason, lost)
        slot.last_failure = reason
        slot.env, slot.process, slot.token, slot.pending = None, None, None, False
        if self.launcher is None:
            if not self._initialised:  # nobody came in the first place
                raise EngineFailure(f"engine slot {slot.index}: {reason}", slot.index, reason)
            slot.state = "starting"  # wait for the editor to connect again
            slot.connect_deadline = math.inf
            return lost
        delay = self.budget.next_delay(slot.index, reason)
        slot.state, slot.retry_at = "idle", time.monotonic() + delay
        return lost

    @staticmethod
    def _classify(error: BaseException | str, process: GameProcess | None) -> str:
        if isinstance(error, SessionTimeout):
            return "timeouts"
        if isinstance(error, SessionClosed):
            # A crash closes the connection a moment before the process can be reaped.
            if process is not None and process.wait(0.2) is not None:
                return "crashes"
            return "disconnects"
        if isinstance(error, EngineError):
            return "engine_errors"
        if isinstance(error, (ProtocolError, SessionError)):
            return "invalid_messages"
        return "connect_failures"

    def close(self) -> None:
        """Say Close to every engine, give launched copies ``close_timeout`` to exit, then kill the rest."""
        if self._closed:
            return
        self._closed = True
        for slot in getattr(self, "slots", []):
            if slot.env is not None:
                slot.env.close()
        launcher = getattr(self, "launcher", None)
        if launcher is not None:
            deadline = time.monotonic() + self.close_timeout
            while time.monotonic() < deadline and any(p.poll() is None for p in launcher.processes):
                time.sleep(0.02)
            launcher.close()
        if getattr(self, "_owns_server", False):
            self.server.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
