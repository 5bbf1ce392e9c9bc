"""Godot RL Agents games as sparring envs: one connected game, and the fleet of games the trainer steps.

- :class:`GodotRLGame` is one game over one connection. Constructing it sends the handshake and reads
  env_info, so its specs are known before ``reset``; ``reset``/``step`` are ``send_*`` then
  :meth:`~GodotRLGame.receive`, so a fleet keeps many games busy at once. Every reply is checked against
  what env_info declared (:mod:`sparring.envs.godot_rl.protocol`); a bad one raises a
  :class:`~sparring.envs.godot_rl.wire.GameError` naming the message and the field.
- :class:`GodotRLFleet` is what the trainer uses: ``num_envs`` games, each listening on its own port,
  either launched as godot-rl's ``GodotEnv`` launches an exported game (``--port=P --env_seed=S
  --disable-render-loop --headless [--action_repeat=N] [--speedup=X]``) or, with no executable,
  awaited from the Godot editor (press Play; port 11008, the next game 11009, ...). Agent ids are
  ``slot * 2**32 + the agent's index in its game`` (the :class:`~sparring.envs.vector.VectorEnv`
  convention). A game that crashes, disconnects, stops answering within ``step_timeout`` or sends an
  invalid message has its agents reported lost and is killed and relaunched with backoff
  (:mod:`sparring.envs.supervision`) while the others play on; a slot that fails more than
  ``max_restarts`` times raises :class:`~sparring.envs.supervision.EngineFailure`, which stops
  training with its checkpoints intact.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparring.envs.base import Actions, GameStats, MultiAgentEnv, StepResult
from sparring.envs.bridge.launcher import GameLauncher, GameProcess
from sparring.envs.godot_rl.protocol import DEFAULT_PORT, GameLayout, handshake
from sparring.envs.godot_rl.wire import Connection, GameClosed, GameError, GameProtocolError, GameTimeout
from sparring.envs.parameters import ParameterValue
from sparring.envs.supervision import EngineFailure, LiveAgents, RestartBudget, lost_result
from sparring.envs.vector import VectorEnv
from sparring.spec import BehaviourSpec

log = logging.getLogger("sparring.godot_rl")


class GodotRLGame(MultiAgentEnv):
    """One Godot RL Agents game, connected, as a multi-agent env (see the module docstring).

    Args:
        connection: the game's accepted connection.
        protocol: ``"auto"``, ``"0.7"`` or ``"0.3"`` (:mod:`sparring.envs.godot_rl.protocol`).
        step_timeout: seconds the game has to answer an action.
        reset_timeout: seconds it has to answer a reset (levels load); default ``step_timeout``.
        handshake_timeout: seconds it has to answer env_info.
    """

    def __init__(self, connection: Connection, protocol: str = "auto", step_timeout: float = 60.0,
                 reset_timeout: float | None = None, handshake_timeout: float = 10.0) -> None:
        self.connection = connection
        self.step_timeout = step_timeout
        self.reset_timeout = reset_timeout if reset_timeout is not None else step_timeout
        connection.send(handshake(protocol), handshake_timeout)
        connection.send({"type": "env_info"}, handshake_timeout)
        info = self._expect("env_info", "env_info", time.monotonic() + handshake_timeout)
        self.layout = GameLayout(info, protocol, connection.name)
        self.specs: dict[str, BehaviourSpec] = self.layout.specs
        self._live = LiveAgents(list(self.specs))
        self._awaiting: tuple[str, float] | None = None  # the request whose reply is owed, and its deadline
        self._reset_once = False

    def __repr__(self) -> str:
        return f"<GodotRLGame {self.connection.name}>"

    @property
    def live_agents(self) -> dict[str, np.ndarray]:
        """Ids of the agents whose episode is under way, per behaviour."""
        return self._live.snapshot()

    def reset(self, seed: int | None = None) -> StepResult:
        """Reset every agent. The protocol carries no seed: a launched game gets its seed on the command line."""
        self.send_reset()
        return self.receive()

    def step(self, actions: Actions) -> StepResult:
        self.send_step(actions)
        return self.receive()

    def send_reset(self) -> None:
        self._send({"type": "reset"}, "reset", self.reset_timeout)
        self._reset_once = True

    def send_step(self, actions: Actions) -> None:
        if not self._reset_once:
            raise RuntimeError("GodotRLGame.step() called before reset()")
        self._send(self.layout.actions_message(dict(actions)), "action", self.step_timeout)

    def receive(self) -> StepResult:
        """The reply to the reset or action sent last."""
        if self._awaiting is None:
            raise RuntimeError("GodotRLGame.receive() with no reset or action sent")
        request, deadline = self._awaiting
        self._awaiting = None
        if request == "reset":
            result = self.layout.reset_result(self._expect("reset", "reset", deadline))
        else:
            result = self.layout.step_result(self._expect("action", "step", deadline))
        self._live.update(result, fresh=request == "reset")
        return result

    def call(self, method: str, timeout: float = 10.0) -> list[Any]:
        """Call ``method`` on each of the game's agent nodes (the protocol's ``call``); what each returned."""
        if self._awaiting is not None:
            raise RuntimeError("GodotRLGame.call() while a reply is owed; receive() it first")
        self.connection.send({"type": "call", "method": method}, timeout)
        returns = self._expect("call", "call", time.monotonic() + timeout).get("returns")
        if not isinstance(returns, list):
            raise GameProtocolError(f"{self.connection.name}: the reply to 'call': field 'returns': expected a list, "
                                    f"got {returns!r:.80}")
        return returns

    def _send(self, message: dict[str, Any], request: str, timeout: float) -> None:
        self.connection.send(message, timeout)
        self._awaiting = (request, time.monotonic() + timeout)

    def _expect(self, request: str, reply: str, deadline: float) -> dict[str, Any]:
        message = self.connection.receive(f"the reply to {request!r}", deadline)
        if message["type"] != reply:
            raise GameProtocolError(f"{self.connection.name}: the reply to {request!r}: field 'type' is "
                                    f"{message['type']!r}, expected {reply!r} (a message out of order)")
        return message

    def close(self) -> None:
        """Tell the game to quit, then close the connection."""
        try:
            self.connection.send({"type": "close"}, 1.0)
        except GameError:
            pass  # it is gone already
        self.connection.close()


@dataclass(frozen=True)
class GameCommand:
    """How godot-rl's ``GodotEnv`` starts an exported game, for one port and seed.

    Attributes:
        program: the executable (or an interpreter, with the script first in ``args``).
        args: arguments before the plugin's flags.
        show_window: leave out ``--disable-render-loop --headless``.
        action_repeat: physics frames each action is held (``--action_repeat=N``); None: the Sync node's.
        speedup: how much faster than real time the physics runs (``--speedup=X``); None: the Sync node's.
    """

    program: str
    args: tuple[str, ...] = ()
    show_window: bool = False
    action_repeat: int | None = None
    speedup: float | None = None

    def __call__(self, port: int, seed: int) -> list[str]:
        command = [self.program, *self.args, f"--port={port}", f"--env_seed={seed}"]
        if not self.show_window:
            command += ["--disable-render-loop", "--headless"]
        if self.action_repeat is not None:
            command.append(f"--action_repeat={self.action_repeat}")
        if self.speedup is not None:
            command.append(f"--speedup={self.speedup:g}")
        return command


@dataclass
class _Slot:
    """One game position: ``starting`` (awaiting its connection), ``ready`` (connected), ``up`` (stepping), or
    ``idle`` until ``retry_at``."""

    index: int
    listener: socket.socket
    port: int
    state: str = "idle"
    game: GodotRLGame | None = None
    process: GameProcess | None = None
    pending: bool = False  # a reply is owed
    connect_by: float = 0.0
    retry_at: float = 0.0


class GodotRLFleet(VectorEnv):
    """``num_envs`` Godot RL Agents games as one env that keeps training while games fail (module docstring).

    Args:
        num_envs: games trained at once.
        command: how to launch a game; ``None``: wait for games started from the editor.
        port: game ``i`` listens on ``port + i``. ``None``: free ports for launched games, 11008 (the plugin's
            default) for the editor.
        protocol: ``"auto"``, ``"0.7"`` or ``"0.3"``.
        seed: game ``i`` is launched with ``--env_seed=seed + i`` (relaunches add ``num_envs`` per restart).
        connect_timeout: seconds a game has to connect: from its launch (default 60), or in the editor
            (default 600; a reconnection after a failure as long).
        step_timeout, reset_timeout, handshake_timeout: as :class:`GodotRLGame` takes them.
        max_restarts, restart_backoff, max_backoff: the :class:`~sparring.envs.supervision.RestartBudget`.
        max_message_bytes: the longest message a game may send.
        log_dir: where launched games' output goes (one file per launch).
        announce: told where editor games must connect, once the ports listen (default: logged).
        close_timeout: seconds launched games have to quit after ``close`` before they are killed.
    """

    copies_seat_agents = False  # game engines declare sides by team ids; they seat nobody

    def __init__(
        self,
        num_envs: int = 1,
        command: GameCommand | None = None,
        *,
        port: int | None = None,
        protocol: str = "auto",
        seed: int = 0,
        step_timeout: float = 60.0,
        reset_timeout: float | None = None,
        connect_timeout: float | None = None,
        handshake_timeout: float = 10.0,
        max_restarts: int = 5,
        restart_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_message_bytes: int = 64 * 2**20,
        log_dir: str | None = None,
        announce: Callable[[str], None] | None = None,
        close_timeout: float = 2.0,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.command = command
        self.protocol, self.seed = protocol, seed
        self.step_timeout, self.reset_timeout, self.handshake_timeout = step_timeout, reset_timeout, handshake_timeout
        self.connect_timeout = connect_timeout or (60.0 if command is not None else 600.0)
        self.max_message_bytes = max_message_bytes
        self.close_timeout = close_timeout
        self.budget = RestartBudget(num_envs, ("crashes", "disconnects", "timeouts", "invalid_messages",
                                               "connect_failures"), max_restarts, restart_backoff, max_backoff, log)
        self.metrics = self.budget.metrics
        self.failures = self.budget.failures
        self.launcher = None if command is None else GameLauncher(command.program, log_dir=log_dir)
        self.slots: list[_Slot] = []
        self._initialised = False
        try:
            base = port if port is not None else (0 if command is not None else DEFAULT_PORT)
            for i in range(num_envs):
                listener = _listen(base + i if base else 0)
                self.slots.append(_Slot(i, listener, listener.getsockname()[1]))
            if command is None:
                ports = ", ".join(str(slot.port) for slot in self.slots)
                (announce or log.info)(f"waiting for {num_envs} Godot RL Agents game(s) to connect to 127.0.0.1 on "
                                       f"port(s) {ports}: press Play in the Godot editor (up to "
                                       f"{self.connect_timeout:g} s)")
            for slot in self.slots:
                self._start(slot)
            while not all(slot.state == "ready" for slot in self.slots):
                self._tend()
                time.sleep(0.01)
            VectorEnv.__init__(self, [slot.game.specs for slot in self.slots])
            self._empty = lost_result(self.specs, {})
            self._initialised = True
        except BaseException:
            self.close()
            raise

    @property
    def ports(self) -> list[int]:
        """The port each game connects to."""
        return [slot.port for slot in self.slots]

    @property
    def processes(self) -> list[GameProcess | None]:
        """Each slot's launched game (``None`` while it has none, and in editor mode)."""
        return [slot.process for slot in self.slots]

    @property
    def restarts(self) -> int:
        return self.metrics["restarts"]

    def set_parameters(self, parameters: Mapping[str, ParameterValue]) -> None:
        raise NotImplementedError("the Godot RL Agents protocol carries no environment parameters")

    def drain_stats(self) -> GameStats:
        return {}  # nor game statistics

    def _run_copies(self, method: str, args: list[Any]) -> list[StepResult]:
        try:
            return self._round(method, args)
        except BaseException:
            self.close()  # EngineFailure, Ctrl-C or a bug mid-round: games are out of step; none can be trusted
            raise

    def _round(self, method: str, args: list[Any]) -> list[StepResult]:
        """Send to every game that plays, tend the others, then collect every answer owed."""
        lost: list[dict[str, np.ndarray]] = [{} for _ in self.slots]
        results: list[StepResult | None] = [None] * len(self.slots)
        for slot in self.slots:
            if slot.state == "up" or (method == "reset" and slot.state == "ready"):
                lost[slot.index] = self._send(slot, method, args[slot.index])
        self._tend()
        while not any(slot.pending for slot in self.slots) and not any(lost):
            time.sleep(0.02)  # every game is down: wait for one to come back (bounded by max_restarts)
            self._tend()
        for slot in self.slots:
            if slot.pending:
                slot.pending = False
                try:
                    results[slot.index] = slot.game.receive()
                    slot.state = "up"
                except GameError as exc:
                    lost[slot.index] = self._fail(slot, exc)
        return [result if result is not None else lost_result(self.specs, lost[i]) if lost[i] else self._empty
                for i, result in enumerate(results)]

    def _send(self, slot: _Slot, method: str, actions: Any) -> dict[str, np.ndarray]:
        """Send a reset or actions to ``slot``'s game; the agents it lost if that failed."""
        try:
            if method == "reset":
                slot.game.send_reset()
            else:
                slot.game.send_step(actions)
            slot.pending = True
            return {}
        except GameError as exc:
            return self._fail(slot, exc)

    def _start(self, slot: _Slot) -> None:
        if self.launcher is not None:
            seed = self.seed + slot.index + len(self.slots) * self.budget.restarts[slot.index]
            slot.process = self.launcher.start(slot.index, self.command(slot.port, seed))
        slot.connect_by = time.monotonic() + self.connect_timeout
        slot.state = "starting"

    def _tend(self) -> None:
        """Advance every slot that is not playing: relaunch after backoff, take its connection, reset it."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.state == "idle" and now >= slot.retry_at:
                self._start(slot)
            if slot.state != "starting":
                continue
            if select.select([slot.listener], [], [], 0)[0]:
                self._connect(slot)
            elif slot.process is not None and slot.process.poll() is not None:
                self._fail(slot, slot.process.describe("before connecting"), "connect_failures")
            elif now > slot.connect_by:
                self._fail(slot, f"no game connected to port {slot.port} within {self.connect_timeout:g} s",
                           "connect_failures")

    def _connect(self, slot: _Slot) -> None:
        try:
            sock, _ = slot.listener.accept()
        except OSError:  # the connection was reset before it was taken: the game's next try will do
            return
        name = f"Godot game {slot.index} (port {slot.port})"
        try:
            game = GodotRLGame(Connection(sock, name, self.max_message_bytes), self.protocol, self.step_timeout,
                               self.reset_timeout, self.handshake_timeout)
        except GameError as exc:
            sock.close()
            self._fail(slot, exc, "connect_failures")
            return
        if self._initialised and game.specs != self.specs:
            game.close()
            self._fail(slot, f"{name} declared other behaviours ({sorted(game.specs)}) or spaces than the run's "
                             f"({sorted(self.specs)})", "connect_failures")
            return
        slot.game, slot.state = game, "ready"
        if self._initialised:  # rejoining: its first decisions come in this round
            self._send(slot, "reset", None)

    def _fail(self, slot: _Slot, error: BaseException | str, kind: str | None = None) -> dict[str, np.ndarray]:
        """Record a slot's failure, kill its game, schedule the relaunch; its live agents are returned as lost."""
        lost = slot.game.live_agents if slot.game is not None and slot.state == "up" else {}
        reason = str(error)
        process = slot.process
        if kind is None:
            kind = _classify(error, process)
        if process is not None:
            if process.poll() is None:
                reason += f"; {process.describe()}, killed"
            elif kind != "connect_failures":
                reason += f"; {process.describe()}"
            process.kill()
        if slot.game is not None:
            slot.game.connection.close()
        self.budget.record(slot.index, kind, reason, lost)
        slot.game, slot.process, slot.pending = None, None, False
        if self.launcher is None and not self._initialised:  # nobody came from the editor in the first place
            raise EngineFailure(f"Godot game slot {slot.index}: {reason}", slot.index, reason)
        delay = self.budget.next_delay(slot.index, reason)
        if self.launcher is None:  # wait for the editor to connect again
            slot.state, slot.connect_by = "starting", time.monotonic() + self.connect_timeout
        else:
            slot.state, slot.retry_at = "idle", time.monotonic() + delay
        return lost

    def close(self) -> None:
        """Tell every game to quit, give launched games ``close_timeout`` to exit, then kill the rest."""
        if self._closed:
            return
        self._closed = True
        for slot in self.slots:
            if slot.game is not None:
                slot.game.close()
        if self.launcher is not None:
            deadline = time.monotonic() + self.close_timeout
            while time.monotonic() < deadline and any(p.poll() is None for p in self.launcher.processes):
                time.sleep(0.02)
            self.launcher.close()
        for slot in self.slots:
            slot.listener.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _classify(error: BaseException | str, process: GameProcess | None) -> str:
    if isinstance(error, GameTimeout):
        return "timeouts"
    if isinstance(error, GameClosed):
        # A crash closes the connection a moment before the process can be reaped.
        return "crashes" if process is not None and process.wait(0.2) is not None else "disconnects"
    return "invalid_messages"


def _listen(port: int) -> socket.socket:
    """A listening socket on loopback, where the plugin connects (it hard-codes 127.0.0.1), port 0: a free one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for a Godot game on 127.0.0.1:{port}: {exc}") from None
    sock.listen(1)
    return sock

