"""The engine side of the sparring bridge: connect, say hello, then answer the trainer's Reset and Actions."""

from __future__ import annotations

import argparse
import queue
import socket
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
import numpy as np

from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import (
    DEFAULT_GRPC_PORT,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TCP_PORT,
    SESSION_METHOD,
    ProtocolError,
    Serialized,
    keep_message_buffers_mapped,
    read_exactly,
    read_frame_size,
    to_bytes,
    write_frame,
)
from sparring_engine.messages import decode_actions, hello_message, serialize_observations
from sparring_engine.tls import client_context, secure
from sparring_engine.types import BehaviourSpec, StepResult


class Game(Protocol):
    """What :func:`run` drives: the same shapes as the sparring env API (``sparring.envs.base``).

    Attributes:
        specs: behaviour name -> :class:`~sparring_engine.BehaviourSpec`, fixed for the game's life.
        action_masks: (optional) names of behaviours whose decisions carry ``action_mask``.
        groups: (optional) behaviour name -> :class:`~sparring_engine.AgentGroups`, the groups its agents
            play in; each step's ``group_ids`` and ``group_rewards`` of those behaviours are filled from them.
        stats: (optional) a :class:`~sparring_engine.StatsRecorder`; what it recorded goes out with each step.
        played: (optional) an :class:`~sparring_engine.ActionReports`, the actions the game took itself for agents
            it plays (a person, a heuristic); each goes out with the agent's next row.

    In a recording session (``sparring record``; ``Welcome.recording``) the trainer sends no actions:
    ``step`` is given an empty dict, and the game plays every agent itself and reports what it did in
    ``played``.

    A game may also define ``configure(parameters)``: it is given every environment parameter's current
    value (a dict of floats) whenever new values arrive from the trainer (the Welcome, a Reset, an
    Actions), before the game's next ``reset`` or ``step``. Values that arrive with Actions are for the
    episodes that start from then on; those that arrive with a Reset, for every episode it starts.
    """

    specs: Mapping[str, BehaviourSpec]

    def reset(self, seed: int) -> StepResult:
        """Start new episodes for every agent; return the first decisions (terminals empty)."""

    def step(self, actions: dict[str, np.ndarray]) -> StepResult:
        """Apply one action row per agent of the last decisions (same order); return the next result."""


class TrainerRefused(ConnectionError):
    """The trainer answered the Hello with a Refusal (wrong token, protocol version, bad specs)."""


class TrainerError(RuntimeError):
    """The trainer sent an Error (it found something wrong in what this engine sent), or broke the protocol."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class BridgeOptions:
    """Where and how to reach the trainer; :func:`from_command_line` fills it from ``--sparring-*`` flags."""

    port: int | None = None  # None: DEFAULT_GRPC_PORT or DEFAULT_TCP_PORT, by transport
    host: str = "127.0.0.1"
    token: str = ""
    transport: str = "grpc"  # "grpc" or "tcp"
    connect_timeout: float = 30.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ca_file: str | None = None  # PEM certificates to trust: connect over TLS (a trainer with tls_cert and tls_key)
    server_name: str = ""  # the name the trainer's certificate must hold; "": host

    @property
    def resolved_port(self) -> int:
        if self.port is not None:
            return self.port
        return DEFAULT_GRPC_PORT if self.transport == "grpc" else DEFAULT_TCP_PORT


def from_command_line(argv: Sequence[str] | None = None) -> BridgeOptions:
    """Bridge options from ``--sparring-port/-host/-token/-transport/-ca/-tls-name``; other arguments are ignored.

    The trainer launches games as ``game [args] --sparring-port N --sparring-token T`` (and ``--sparring-ca FILE``
    when it uses TLS).
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--sparring-port", type=int)
    parser.add_argument("--sparring-host", default="127.0.0.1")
    parser.add_argument("--sparring-token", default="")
    parser.add_argument("--sparring-transport", choices=("grpc", "tcp"), default="grpc")
    parser.add_argument("--sparring-connect-timeout", type=float, default=30.0)
    parser.add_argument("--sparring-ca")
    parser.add_argument("--sparring-tls-name", default="")
    ns, _ = parser.parse_known_args(argv)
    return BridgeOptions(ns.sparring_port, ns.sparring_host, ns.sparring_token, ns.sparring_transport,
                         ns.sparring_connect_timeout, ca_file=ns.sparring_ca, server_name=ns.sparring_tls_name)


def _connect(options: BridgeOptions) -> socket.socket:
    """A socket connected to the trainer, retried until ``connect_timeout`` (the trainer may still be starting);
    with ``ca_file``, after a TLS handshake that verified the trainer (:class:`~sparring_engine.tls.TrainerTlsError`
    if it fails)."""
    context = None
    if options.ca_file:
        context = client_context(options.ca_file, alpn="h2" if options.transport == "grpc" else None)
    deadline = time.monotonic() + options.connect_timeout
    address = (options.host, options.resolved_port)
    where = f"{address[0]}:{address[1]}"
    while True:
        try:
            sock = socket.create_connection(address, timeout=max(deadline - time.monotonic(), 0.1))
            break
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise ConnectionError(f"no trainer on {where} ({options.transport}): {exc}") from None
            time.sleep(0.1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if context is None:
        return sock
    return secure(sock, context, options.server_name or options.host, options.ca_file, where)


class _TcpLink:
    def __init__(self, options: BridgeOptions) -> None:
        self._max = options.max_message_bytes
        self._sock = _connect(options)

    def send(self, message: pb.EngineMessage | Serialized) -> None:
        self._sock.settimeout(None)
        write_frame(self._sock, message)

    def receive(self) -> pb.TrainerMessage:
        size = read_frame_size(self._sock, self._max, None)
        return pb.TrainerMessage.FromString(read_exactly(self._sock, size, None))

    def close(self) -> None:
        self._sock.close()


class _GrpcLink:
    def __init__(self, options: BridgeOptions) -> None:
        target = f"{options.host}:{options.resolved_port}"
        channel_options = [
            ("grpc.max_send_message_length", options.max_message_bytes),
            ("grpc.max_receive_message_length", options.max_message_bytes),
        ]
        if options.ca_file:
            _connect(options).close()  # says why a certificate fails, which gRPC's own retries never do
            if options.server_name:
                channel_options.append(("grpc.ssl_target_name_override", options.server_name))
            with open(options.ca_file, "rb") as ca:
                credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
            self._channel = grpc.secure_channel(target, credentials, options=channel_options)
        else:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=options.connect_timeout)
        except grpc.FutureTimeoutError:
            self._channel.close()
            hint = "" if options.ca_file else " (a trainer that uses TLS looks the same to an engine without --sparring-ca)"
            raise ConnectionError(f"no trainer on {target} (grpc) within {options.connect_timeout} s{hint}") from None
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        session = self._channel.stream_stream(SESSION_METHOD, request_serializer=to_bytes,
                                              response_deserializer=pb.TrainerMessage.FromString)
        self._responses = session(iter(self._outbox.get, None))

    def send(self, message: pb.EngineMessage | Serialized) -> None:
        self._outbox.put(message)

    def receive(self) -> pb.TrainerMessage:
        try:
            return next(self._responses)
        except StopIteration:
            raise ConnectionError("the trainer ended the session") from None
        except grpc.RpcError as exc:
            raise ConnectionError(f"the connection to the trainer failed: {exc.code()} {exc.details()}") from None

    def close(self) -> None:
        self._outbox.put(None)  # ends the request stream after what is queued (an Error, say) has gone out
        # Give the trainer a moment to see the end and finish the stream, so nothing queued is cut off.
        drain = threading.Thread(target=self._drain, daemon=True)
        drain.start()
        drain.join(1.0)
        self._responses.cancel()
        self._channel.close()

    def _drain(self) -> None:
        try:
            for _ in self._responses:
                pass
        except grpc.RpcError:
            pass


class EngineConnection:
    """One session with the trainer, for engines that want to drive the exchange themselves.

    Most games call :func:`run` instead. Otherwise: ``hello()``, then repeat
    ``receive()`` and ``send()`` (one Observations per Reset or Actions).
    """

    def __init__(self, options: BridgeOptions) -> None:
        if options.transport not in ("grpc", "tcp"):
            raise ValueError(f"transport must be 'grpc' or 'tcp', got {options.transport!r}")
        self.options = options
        self._link = _GrpcLink(options) if options.transport == "grpc" else _TcpLink(options)

    def hello(self, specs: Mapping[str, BehaviourSpec], action_masks: Collection[str] = (),
              engine_name: str = "python") -> pb.Welcome:
        """Declare the behaviours; the trainer's Welcome, or :class:`TrainerRefused` with its reason."""
        self.send(pb.EngineMessage(hello=hello_message(specs, action_masks, self.options.token, engine_name)))
        try:
            answer = self.receive()
        except ConnectionError as exc:
            if self.options.ca_file:
                raise
            raise ConnectionError(f"the trainer hung up instead of answering the Hello ({exc}); a trainer that uses "
                                  "TLS does that to an engine connecting without it (--sparring-ca)") from None
        kind = answer.WhichOneof("message")
        if kind == "welcome":
            return answer.welcome
        if kind == "refusal":
            raise TrainerRefused(f"the trainer refused this engine: {answer.refusal.reason}")
        if kind == "error":
            raise TrainerError(f"the trainer reported an error at {answer.error.field}: {answer.error.message}",
                               answer.error.field)
        raise TrainerError(f"the trainer answered Hello with {kind}")

    def send(self, message: pb.EngineMessage | Serialized) -> None:
        """Send one message (a step's Observations as :func:`serialize_observations` makes them)."""
        self._link.send(message)

    def receive(self) -> pb.TrainerMessage:
        """The trainer's next message; ``ConnectionError`` if the trainer went away."""
        return self._link.receive()

    def send_error(self, message: str, field: str = "") -> None:
        """Tell the trainer what went wrong on this side; the session then ends."""
        try:
            self.send(pb.EngineMessage(error=pb.Error(message=message, field=field)))
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> EngineConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run(game: Game, options: BridgeOptions | None = None, engine_name: str | None = None) -> None:
    """Connect to the trainer and drive ``game`` until the trainer says Close.

    Raises :class:`TrainerRefused`, :class:`TrainerError` or ``ConnectionError``
    when the session cannot go on; a game's own exception is reported to the
    trainer (as an Error naming it) and re-raised.
    """
    options = options or from_command_line()
    keep_message_buffers_mapped()
    specs = dict(game.specs)
    masks = set(getattr(game, "action_masks", ()))
    with EngineConnection(options) as conn:
        welcome = conn.hello(specs, masks, engine_name or type(game).__name__)
        parameters = _Parameters(game, welcome.environment_parameters)
        step: int | None = None
        counts: dict[str, int] = {}
        decided: dict[str, np.ndarray] = {}
        while True:
            message = conn.receive()
            kind = message.WhichOneof("message")
            try:
                if kind == "reset":
                    parameters.update(message.reset.environment_parameters)
                    _discard_group_rewards(game)
                    _discard_reports(game)
                    result, step = game.reset(message.reset.seed), 0
                    decided = {}
                elif kind == "actions":
                    if step is None:
                        raise ProtocolError("actions", "Actions before the first Reset")
                    if message.actions.step != step:
                        raise ProtocolError("actions.step", f"expected {step} (the step of the last "
                                                  f"Observations), got {message.actions.step}")
                    actions = decode_actions(message.actions, specs, counts, welcome.recording)
                    parameters.update(message.actions.environment_parameters)
                    result = game.step(actions)
                    step += 1
                elif kind == "close":
                    return
                elif kind == "error":
                    raise TrainerError(f"the trainer reported an error at {message.error.field or '?'}: "
                                       f"{message.error.message}", message.error.field)
                else:
                    raise ProtocolError("message", f"unexpected {kind or 'empty message'} from the trainer")
                result = _labelled(game, result, decided)
            except ProtocolError as exc:
                conn.send_error(str(exc), exc.field)
                raise TrainerError(f"the trainer sent an invalid message: {exc}", exc.field) from None
            except TrainerError:
                raise
            except Exception as exc:
                conn.send_error(f"{type(exc).__name__} in the game: {exc}")
                raise
            counts = {name: len(part.decisions) for name, part in result.items()}
            decided = {name: np.asarray(part.decisions.agent_ids, np.int64) for name, part in result.items()}
            conn.send(serialize_observations(step, specs, result, _recorded_stats(game)))


class _Parameters:
    """The environment parameters' current values (the Welcome's, then merged with each Reset's and Actions'),
    handed to the game's ``configure`` whenever new ones arrive."""

    def __init__(self, game: Game, welcome: Mapping[str, float]) -> None:
        self._configure = getattr(game, "configure", None)
        self._values: dict[str, float] = {}
        self.update(welcome)

    def update(self, parameters: Mapping[str, float]) -> None:
        if not parameters:
            return
        self._values.update(parameters)
        if self._configure is not None:
            self._configure(dict(self._values))


def _labelled(game: Game, result: StepResult, decided: Mapping[str, np.ndarray]) -> StepResult:
    """``result`` with the group columns of the behaviours the game keeps groups for filled in, and the actions
    it reported (``decided``: the agents of the last decisions, the only ones that could have acted)."""
    groups = getattr(game, "groups", None)
    if groups:
        result = {name: groups[name].label(part) if name in groups else part for name, part in result.items()}
    played = getattr(game, "played", None)
    if played is not None:
        result = played.attach(game.specs, result, decided)
    return result


def _discard_group_rewards(game: Game) -> None:
    for groups in getattr(game, "groups", {}).values():
        groups.discard_rewards()


def _discard_reports(game: Game) -> None:
    played = getattr(game, "played", None)
    if played is not None:
        played.discard()


def _recorded_stats(game: Game) -> list[pb.GameStat]:
    recorder = getattr(game, "stats", None)
    return recorder.drain() if recorder is not None else []
