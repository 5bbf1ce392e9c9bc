"""The bridge server: game engines connect over gRPC or framed TCP, say hello, and become sessions for the trainer.

The trainer is the server (DESIGN section 4). Each connection is one session:

1. The engine sends ``Hello``; the server checks the protocol version, the auth
   token (constant-time) and the behaviour specs, then answers ``Welcome`` or
   ``Refusal`` (and hangs up). This happens on a server thread, so a slow or
   hostile engine never holds up the trainer or another engine.
2. :meth:`BridgeServer.accept` hands the trainer the next session that completed
   its handshake: an :class:`EngineSession`, whose :meth:`~EngineSession.request`
   sends one ``TrainerMessage`` and waits for the engine's reply (lock-step).

Anything that goes wrong with one engine (a timeout, a dropped connection, an
``Error`` from the engine, a message of the wrong type, an oversized or
unparseable frame) raises a :class:`SessionError` from that session only, and
closes it; the server keeps serving everyone else.

TCP frames are a 4-byte little-endian unsigned length, then that many bytes of a
serialized ``EngineMessage`` / ``TrainerMessage``. With a certificate (``tls_cert``,
``tls_key``) both transports speak only TLS; the token is checked as before. Usage::

    with BridgeServer(tcp_port=5106) as server:      # loopback, no token needed
        session = server.accept(timeout=60)
        reply = session.request(pb.TrainerMessage(reset=pb.Reset(seed=0)), timeout=10)
"""

from __future__ import annotations

import hmac
import ipaddress
import itertools
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError

from sparring.envs.bridge import codec
from sparring.envs.bridge.tls import SETUP, ServerCertificate, handshake_failure
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Serialized,
    keep_message_buffers_mapped,
    read_exactly,
    read_frame_size,
    to_bytes,
    write_frame,
)
from sparring.spec import BehaviourSpec

log = logging.getLogger("sparring.bridge")

RECORDING_VERSION = 3
"""The first protocol version whose engines can be recorded (``Welcome.recording``, played actions)."""

# -- errors ------------------------------------------------------------------


class SessionError(RuntimeError):
    """One engine session failed; it has been closed. The server and other sessions are unaffected."""


class SessionTimeout(SessionError):
    """The engine did not answer in time (hung, or much slower than the timeout allows)."""


class SessionClosed(SessionError):
    """The connection ended: the engine crashed, disconnected, or sent Close."""


class EngineError(SessionError):
    """The engine sent an Error message; ``field`` is the path it blamed, if any."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class UnexpectedMessage(SessionError):
    """The engine sent a message of the wrong type for this point of the session."""


class InvalidFrame(SessionError):
    """A TCP frame over ``max_message_bytes``, or bytes that are not a serialized EngineMessage."""


# -- sessions ----------------------------------------------------------------


class EngineSession:
    """One connected engine, past its handshake, driven lock-step by the trainer's thread.

    Attributes:
        specs: the behaviour specs the engine declared, by name.
        masked: names of the behaviours whose decisions carry action masks.
        engine_name: what the engine called itself in its Hello.
        protocol_version: the version this session speaks, the engine's (1: no groups, statistics or
            parameters in Actions, which the engine would skip).
        transport: ``"grpc"`` or ``"tcp"``.
        peer: the engine's address, for messages.
        failure: why the session ended, once it has (``""`` while open).
        recording: the engine was welcomed to a recording session: it plays every agent itself, the
            trainer's Actions carry no rows, and it reports what it played (protocol version 3).
    """

    transport = ""
    recording = False

    def __init__(self, hello: pb.Hello, specs: dict[str, BehaviourSpec], masked: set[str], peer: str) -> None:
        self.specs = specs
        self.masked = frozenset(masked)
        self.engine_name = hello.engine_name or "engine"
        self.protocol_version = hello.protocol_version
        self.peer = peer
        self.failure = ""
        self._closed = False
        self._server: BridgeServer | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = f"closed: {self.failure}" if self._closed else "open"
        return f"<EngineSession {self.engine_name!r} over {self.transport} from {self.peer}, {state}>"

    @property
    def name(self) -> str:
        """How errors refer to this engine."""
        return f"engine {self.engine_name!r} ({self.transport} {self.peer})"

    def send(self, message: pb.TrainerMessage | Serialized, timeout: float | None = None) -> None:
        """Send one message (a step's Actions come serialized by reference); raises :class:`SessionError` (and
        closes) if the engine is gone."""
        if self._closed:
            raise SessionClosed(f"{self.name} is closed: {self.failure}")
        try:
            self._send(message, timeout)
        except SessionError as exc:
            self._fail(str(exc))
            raise

    def receive(self, timeout: float | None, expect: str = "observations") -> pb.EngineMessage:
        """The engine's next message, which must be of kind ``expect``; otherwise :class:`SessionError`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return self.receive_until(deadline, expect)

    def receive_until(self, deadline: float | None, expect: str = "observations") -> pb.EngineMessage:
        """:meth:`receive` with a ``time.monotonic()`` deadline, to collect from many engines at once."""
        if self._closed:
            raise SessionClosed(f"{self.name} is closed: {self.failure}")
        try:
            message = self._receive(deadline)
        except SessionError as exc:
            self._fail(str(exc), graceful=isinstance(exc, InvalidFrame))  # the engine was told why: let it hear
            raise
        kind = message.WhichOneof("message")
        if kind == expect:
            return message
        if kind == "error":
            where = f" at {message.error.field}" if message.error.field else ""
            error: SessionError = EngineError(f"{self.name} reported an error{where}: {message.error.message}",
                                              message.error.field)
        elif kind == "close":
            error = SessionClosed(f"{self.name} closed the session: {message.close.reason or 'no reason given'}")
        else:
            what = kind or "an empty EngineMessage"
            error = UnexpectedMessage(f"{self.name} sent {what} where {expect} was expected")
            self._tell(f"expected {expect}, got {what}", "message")  # the engine learns why it is hung up on
        self._fail(str(error), graceful=True)
        raise error

    def request(
        self, message: pb.TrainerMessage, timeout: float | None, expect: str = "observations"
    ) -> pb.EngineMessage:
        """Send ``message`` and wait up to ``timeout`` seconds for the engine's reply of kind ``expect``."""
        self.send(message, timeout)
        return self.receive(timeout, expect)

    def fail(self, message: str, field: str = "") -> None:
        """Tell the engine what it got wrong (an Error message naming ``field``) and end the session."""
        if self._closed:
            return
        self._tell(message, field)
        self._fail(f"{field}: {message}" if field else message, graceful=True)

    def _tell(self, message: str, field: str) -> None:
        """Send an Error, best effort: the engine may already be gone."""
        try:
            self._send(pb.TrainerMessage(error=pb.Error(message=message, field=field)), 1.0)
        except SessionError:
            pass

    def close(self, reason: str = "") -> None:
        """Say Close to the engine (best effort) and end the session. Safe to call twice."""
        if self._closed:
            return
        try:
            self._send(pb.TrainerMessage(close=pb.Close(reason=reason)), 1.0)
        except SessionError:
            pass
        self._fail(f"closed by the trainer{': ' + reason if reason else ''}", graceful=True)

    def _fail(self, why: str, graceful: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self.failure = why
        self._teardown(graceful)
        if self._server is not None:
            self._server._forget(self)

    # transport-specific
    def _send(self, message: pb.TrainerMessage | Serialized, timeout: float | None) -> None:
        raise NotImplementedError

    def _receive(self, deadline: float | None) -> pb.EngineMessage:
        raise NotImplementedError

    def _teardown(self, graceful: bool) -> None:
        raise NotImplementedError


class _TcpSession(EngineSession):
    """The trainer's thread reads and writes the socket itself: no hand-off between threads."""

    transport = "tcp"

    def __init__(self, sock: socket.socket, max_message_bytes: int, *args) -> None:
        super().__init__(*args)
        self._sock = sock
        self._max = max_message_bytes

    def _send(self, message: pb.TrainerMessage | Serialized, timeout: float | None) -> None:
        try:
            self._sock.settimeout(timeout)
            write_frame(self._sock, message)
        except socket.timeout:
            raise SessionTimeout(f"{self.name} did not take a message within {timeout} s") from None
        except OSError as exc:
            raise SessionClosed(f"{self.name} disconnected ({exc})") from None

    def _receive(self, deadline: float | None) -> pb.EngineMessage:
        try:
            size = read_frame_size(self._sock, self._max, deadline)
            payload = read_exactly(self._sock, size, deadline)
        except TimeoutError:
            waited = "" if deadline is None else " in time"
            raise SessionTimeout(f"{self.name} did not answer{waited}; treated as hung") from None
        except ValueError as exc:  # oversized frame
            self._tell(str(exc), "frame")
            raise InvalidFrame(f"{self.name} sent a {exc}") from None
        except OSError as exc:
            raise SessionClosed(f"{self.name} disconnected ({exc})") from None
        try:
            return pb.EngineMessage.FromString(payload)
        except DecodeError:
            problem = f"malformed frame: {size} bytes that do not parse as an EngineMessage"
            self._tell(problem, "frame")
            raise InvalidFrame(f"{self.name} sent a {problem}") from None

    def _teardown(self, graceful: bool) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


class _Ended:
    """Put on a gRPC session's inbox when its stream ends."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


_STOP = object()  # put on a gRPC session's outbox to end the response stream


class _GrpcSession(EngineSession):
    """The gRPC handler thread carries messages between the stream and two queues."""

    transport = "grpc"

    def __init__(self, requests, context: grpc.ServicerContext, *args) -> None:
        super().__init__(*args)
        self._requests = requests
        self._context = context
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()

    def _send(self, message: pb.TrainerMessage | Serialized, timeout: float | None) -> None:
        self._outbox.put(message)

    def _receive(self, deadline: float | None) -> pb.EngineMessage:
        try:
            item = self._inbox.get(timeout=None if deadline is None else max(deadline - time.monotonic(), 0))
        except queue.Empty:
            raise SessionTimeout(f"{self.name} did not answer in time; treated as hung") from None
        if isinstance(item, _Ended):
            self._inbox.put(item)  # every later receive sees the end too
            raise SessionClosed(f"{self.name} disconnected ({item.reason})")
        if isinstance(item, _Undecodable):
            self._tell(item.problem, "message")
            raise InvalidFrame(f"{self.name} sent a {item.problem}")
        return item

    def _teardown(self, graceful: bool) -> None:
        self._outbox.put(_STOP)
        if not graceful:
            self._context.cancel()  # frees the handler thread if it waits on a hung engine

    def on_rpc_done(self) -> None:
        self._inbox.put(_Ended("the stream ended"))
        self._outbox.put(_STOP)

    def serve(self):
        """Response generator run by the gRPC handler thread: one request per trainer message."""
        while True:
            item = self._outbox.get()
            if item is _STOP:
                return
            yield item
            if not isinstance(item, Serialized) and item.WhichOneof("message") in ("close", "error"):
                return
            try:
                reply = next(self._requests)
            except StopIteration:
                self._inbox.put(_Ended("the engine closed its stream"))
                return
            except Exception:  # grpc.RpcError (no details on this side): cancelled, dropped, or over the size limit
                self._inbox.put(_Ended("the stream was cancelled or dropped"))
                return
            self._inbox.put(reply)


# -- the server --------------------------------------------------------------


class _Refused(Exception):
    pass


def is_loopback(host: str) -> bool:
    """True if ``host`` only ever means this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class BridgeServer:
    """Listens for engines over gRPC and/or framed TCP and hands completed handshakes to the trainer.

    Args:
        host: the address to bind. Loopback by default; any other address needs ``token`` and TLS.
        grpc_port: port for the gRPC transport; 0 picks a free one, ``None`` disables it.
        tcp_port: port for the framed TCP transport; 0 picks a free one, ``None`` disables it.
        token: the auth token engines must send in their Hello (compared in constant time).
            ``None``: no token is required (loopback only), except from launched engines,
            which always get their own (:meth:`add_launch_token`).
        max_message_bytes: the largest message either side may send.
        limits: what an engine may declare in its Hello (behaviours, observation and action sizes), checked
            before anything is allocated for it.
        handshake_timeout: seconds a new connection has to send its Hello.
        seed: the seed in each Welcome (plus the session's count, so engines differ).
        environment_parameters: sent with each Welcome.
        max_sessions: connections served at once (each holds a thread while open).
        recording: welcome engines to recording sessions (``sparring record``): they play every agent
            themselves and report the actions they took, which needs protocol version 3; older engines
            are refused, saying so.
        tls_cert, tls_key: a PEM certificate chain and its unencrypted private key (both or neither): both
            transports then speak only TLS, and engines verify the chain (``--sparring-ca``). A failed TLS
            handshake is refused like a bad Hello: logged and counted in ``stats["refused"]`` (the framed TCP
            transport's; gRPC's happen inside gRPC, out of the server's sight).

    After construction, ``grpc_port`` and ``tcp_port`` hold the ports actually bound.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        grpc_port: int | None = 0,
        tcp_port: int | None = 0,
        token: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        handshake_timeout: float = 10.0,
        *,
        limits: codec.SpecLimits = codec.DEFAULT_LIMITS,
        seed: int = 0,
        environment_parameters: Mapping[str, float] | None = None,
        max_sessions: int = 64,
        recording: bool = False,
        tls_cert: str | os.PathLike | None = None,
        tls_key: str | os.PathLike | None = None,
    ) -> None:
        if token is not None and not token:
            raise ValueError("token must be a non-empty string, or None for no token (loopback only)")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give the certificate chain and its private key, "
                             "or neither")
        if not is_loopback(host):
            if token is None:
                raise ValueError(
                    f"refusing to listen on {host} without a token: any machine that can reach it could "
                    "connect and feed this trainer; pass token= (engines send it with --sparring-token) "
                    "or bind 127.0.0.1"
                )
            if tls_cert is None:
                raise ValueError(
                    f"refusing to listen on {host} in plaintext: the token and the game's traffic would cross the "
                    "network for anyone on the way to read; pass tls_cert= and tls_key=, a PEM certificate chain and "
                    "its private key (the env config keys tls_cert and tls_key, check-engine's --tls-cert and "
                    f"--tls-key; {SETUP}), or bind 127.0.0.1"
                )
        if grpc_port is None and tcp_port is None:
            raise ValueError("grpc_port and tcp_port are both None; enable at least one transport")
        self._certificate = None if tls_cert is None else ServerCertificate(tls_cert, tls_key)
        keep_message_buffers_mapped()
        self.host = host
        self.max_message_bytes = int(max_message_bytes)
        self.limits = limits
        self.run_specs: tuple[dict[str, BehaviourSpec], set[str]] | None = None
        """The run's behaviour specs and masked behaviours, once known: a Hello that differs is refused, naming how."""
        self.handshake_timeout = handshake_timeout
        self.seed = seed
        self.environment_parameters = dict(environment_parameters or {})
        self.max_sessions = max_sessions
        self.recording = recording
        self.stats = {"sessions": 0, "refused": 0}
        self._token = None if token is None else token.encode()
        self._launch_tokens: dict[bytes, str] = {}  # encoded -> the key sessions queue under
        self._queues: dict[str | None, queue.SimpleQueue] = {None: queue.SimpleQueue()}
        self._lock = threading.Lock()
        self._open: set[EngineSession] = set()
        self._connections = 0  # TCP connections in their handshake, for max_sessions
        self._counter = itertools.count()
        self._closed = False
        self._grpc: grpc.Server | None = None
        self._listener: socket.socket | None = None
        self.grpc_port: int | None = None
        self.tcp_port: int | None = None
        try:
            if grpc_port is not None:
                self._start_grpc(grpc_port)
            if tcp_port is not None:
                self._start_tcp(tcp_port)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<BridgeServer {self.host} grpc={self.grpc_port} tcp={self.tcp_port}>"

    @property
    def tls_cert(self) -> Path | None:
        """The certificate chain engines verify (absolute), which launched copies are told to trust; ``None``
        without TLS."""
        return None if self._certificate is None else self._certificate.cert_file

    # -- transports ----------------------------------------------------------

    def _start_grpc(self, port: int) -> None:
        options = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.max_sessions, thread_name_prefix="sparring-bridge-grpc"),
            options=options,
            maximum_concurrent_rpcs=self.max_sessions,
        )
        # Requests arrive as raw bytes and are parsed here, so bytes that are not an EngineMessage get an Error
        # naming the problem (gRPC's own deserializer would answer with a bare INTERNAL status).
        session_handler = grpc.stream_stream_rpc_method_handler(
            _Servicer(self).Session, request_deserializer=None, response_serializer=to_bytes)
        self._grpc.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("sparring.v1.Bridge", {"Session": session_handler}),))
        try:
            address = host_port(self.host, port)
            if self._certificate is None:
                bound = self._grpc.add_insecure_port(address)
            else:
                bound = self._grpc.add_secure_port(address, self._certificate.grpc_credentials())
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {host_port(self.host, port)}: {exc}") from None
        if not bound:
            raise OSError(f"cannot listen for gRPC on {host_port(self.host, port)} (port in use?)")
        self.grpc_port = bound
        self._grpc.start()

    def _start_tcp(self, port: int) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._listener = socket.create_server((self.host, port), family=family, backlog=64)
        except OSError as exc:
            raise OSError(f"cannot listen for TCP on {host_port(self.host, port)}: {exc}") from None
        self._listener.settimeout(0.2)
        self.tcp_port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_tcp, name="sparring-bridge-tcp", daemon=True).start()

    def _accept_tcp(self) -> None:
        listener = self._listener
        while not self._closed:
            try:
                conn, address = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve_tcp, args=(conn, host_port(*address[:2])), daemon=True,
                             name="sparring-bridge-handshake").start()

    def _serve_tcp(self, conn: socket.socket, peer: str) -> None:
        """Handshake one TCP connection; on success the session is the trainer's, else the connection is closed."""
        with self._lock:
            self._connections += 1
            crowded = self._connections + len(self._open) > self.max_sessions
        handed_over = False
        try:
            deadline = time.monotonic() + self.handshake_timeout
            try:
                conn = self._secured(conn, deadline)
            except OSError as exc:
                self._note_refusal(peer, handshake_failure(exc))
                return
            try:
                if crowded:
                    raise _Refused(f"this trainer already serves {self.max_sessions} engines (max_sessions)")
                size = read_frame_size(conn, self.max_message_bytes, deadline)
                message = pb.EngineMessage.FromString(read_exactly(conn, size, deadline))
                hello, specs, masked, key = self._check_hello(message)
            except ValueError as exc:  # oversized frame (DecodeError is not a ValueError)
                self._refuse(conn, peer, str(exc), error=True)
                return
            except DecodeError:
                self._refuse(conn, peer, "malformed frame: the bytes do not parse as an EngineMessage", error=True)
                return
            except _Refused as exc:
                self._refuse(conn, peer, str(exc))
                return
            except (OSError, TimeoutError) as exc:
                log.info("bridge: %s left before its handshake finished (%s)", peer, exc)
                return
            session = _TcpSession(conn, self.max_message_bytes, hello, specs, masked, peer)
            try:
                conn.settimeout(self.handshake_timeout)
                write_frame(conn, self._welcome(hello))
            except OSError as exc:
                log.info("bridge: %s left during its handshake (%s)", peer, exc)
                return
            handed_over = self._hand_over(session, key)
        finally:
            with self._lock:
                self._connections -= 1
            if not handed_over:
                conn.close()

    def _secured(self, conn: socket.socket, deadline: float) -> socket.socket:
        """``conn`` after its TLS handshake (as it is without TLS); ``OSError`` if the handshake fails, when
        ``conn`` is closed."""
        if self._certificate is None:
            return conn
        conn.settimeout(max(deadline - time.monotonic(), 0.001))
        return self._certificate.context.wrap_socket(conn, server_side=True)

    def _refuse(self, conn: socket.socket, peer: str, reason: str, error: bool = False) -> None:
        self._note_refusal(peer, reason)
        message = (pb.TrainerMessage(error=pb.Error(message=reason, field="frame")) if error
                   else pb.TrainerMessage(refusal=pb.Refusal(reason=reason)))
        try:
            conn.settimeout(1.0)
            write_frame(conn, message)
        except OSError:
            pass

    def _note_refusal(self, peer: str, reason: str) -> None:
        with self._lock:
            self.stats["refused"] += 1
        log.warning("bridge: refused %s: %s", peer, reason)

    # -- handshake -----------------------------------------------------------

    def _check_hello(
        self, message: pb.EngineMessage
    ) -> tuple[pb.Hello, dict[str, BehaviourSpec], set[str], str | None]:
        """``(hello, specs, masked, queue key)``, or :class:`_Refused` saying what is wrong (never echoing tokens)."""
        kind = message.WhichOneof("message")
        if kind != "hello":
            raise _Refused(f"the first message must be Hello, got {kind or 'an empty EngineMessage'}")
        hello = message.hello
        if not 1 <= hello.protocol_version <= codec.PROTOCOL_VERSION:
            raise _Refused(f"unsupported protocol version {hello.protocol_version}; "
                           f"this trainer speaks 1 to {codec.PROTOCOL_VERSION}")
        key = self._authenticate(hello.auth_token)
        if self.recording and hello.protocol_version < RECORDING_VERSION:
            raise _Refused(f"this trainer is recording demonstrations, which needs protocol version "
                           f"{RECORDING_VERSION} (the engine plays every agent itself and reports the actions it took); "
                           f"the engine speaks {hello.protocol_version}")
        try:
            specs, masked = codec.specs_from_hello(hello, self.limits)
        except codec.ProtocolError as exc:
            raise _Refused(f"invalid Hello: {exc}") from None
        except Exception as exc:  # a declaration the checks above missed must still not take a thread down
            log.exception("bridge: validating a Hello failed")
            raise _Refused(f"invalid Hello: {type(exc).__name__}: {exc}") from None
        if self.run_specs is not None:
            difference = codec.spec_difference(*self.run_specs, specs, masked)
            if difference:
                raise _Refused(f"this engine's behaviours differ from the run's: {difference}")
        return hello, specs, masked, key

    def _authenticate(self, token: str) -> str | None:
        given = token.encode()
        with self._lock:
            launch = list(self._launch_tokens.items())
        matched = None
        for expected, key in launch:  # every comparison runs: no early exit to time
            if hmac.compare_digest(given, expected):
                matched = key
        if matched is not None:
            return matched
        if self._token is None:
            return None
        if hmac.compare_digest(given, self._token):
            return None
        if not token:
            raise _Refused("missing auth token: this trainer requires one (pass --sparring-token)")
        raise _Refused("wrong auth token")

    def _welcome(self, hello: pb.Hello) -> pb.TrainerMessage:
        return pb.TrainerMessage(welcome=pb.Welcome(
            protocol_version=hello.protocol_version,  # the trainer speaks every version up to its own
            seed=self.seed + next(self._counter),
            environment_parameters=self.environment_parameters,
            recording=self.recording,
        ))

    def _hand_over(self, session: EngineSession, key: str | None) -> bool:
        with self._lock:
            if self._closed:
                return False
            q = self._queues.get(key)
            if q is None:  # its launch token was withdrawn meanwhile: a stale engine
                return False
            session._server = self
            session.recording = self.recording
            self._open.add(session)
            self.stats["sessions"] += 1
        q.put(session)
        log.info("bridge: %s connected with behaviours %s", session.name, sorted(session.specs))
        return True

    def _forget(self, session: EngineSession) -> None:
        with self._lock:
            self._open.discard(session)

    # -- the trainer's side --------------------------------------------------

    def add_launch_token(self, token: str) -> None:
        """Accept engines that present ``token``; :meth:`accept` with ``token=`` returns only those."""
        with self._lock:
            self._launch_tokens[token.encode()] = token
            self._queues.setdefault(token, queue.SimpleQueue())

    def remove_launch_token(self, token: str) -> None:
        """Stop accepting ``token``; sessions that used it and were never accepted are closed."""
        with self._lock:
            self._launch_tokens.pop(token.encode(), None)
            q = self._queues.pop(token, None)
        while q is not None:
            try:
                q.get_nowait().close("this engine's launch was withdrawn")
            except queue.Empty:
                break

    def accept(self, timeout: float | None = None, token: str | None = None) -> EngineSession:
        """The next engine that completed its handshake; ``TimeoutError`` after ``timeout`` seconds.

        With ``token``, only an engine launched with that token (:meth:`add_launch_token`);
        without, any engine that authenticated with the server's own token (or none).
        """
        session = self.poll(token, timeout)
        if session is None:
            ports = ", ".join(f"{t} port {p}" for t, p in (("gRPC", self.grpc_port), ("TCP", self.tcp_port)) if p)
            raise TimeoutError(f"no engine connected within {timeout} s (listening on {self.host}, {ports})")
        return session

    def poll(self, token: str | None = None, timeout: float | None = 0.0) -> EngineSession | None:
        """Like :meth:`accept`, but ``None`` instead of an error when nobody came; ``timeout=0`` never waits."""
        with self._lock:
            q = self._queues.get(token)
        if q is None:
            raise KeyError("unknown launch token (add_launch_token first)")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                session = q.get(timeout=None if deadline is None else max(deadline - time.monotonic(), 0))
            except queue.Empty:
                return None
            if not session.closed:
                return session

    def close(self) -> None:
        """Stop listening and end every session (Close to each engine still connected)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sessions = list(self._open)
        for session in sessions:
            session.close("the trainer is shutting down")
        if self._listener is not None:
            self._listener.close()
        if self._grpc is not None:
            self._grpc.stop(grace=0.5)

    def __enter__(self) -> BridgeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Undecodable:
    """What a gRPC session's request stream yields for bytes that do not parse as an EngineMessage."""

    def __init__(self, size: int) -> None:
        self.problem = f"malformed message: {size} bytes that do not parse as an EngineMessage"


def _parsed(requests):
    """The raw request stream of a gRPC session as EngineMessages (or :class:`_Undecodable`)."""
    for raw in requests:
        try:
            yield pb.EngineMessage.FromString(raw)
        except DecodeError:
            yield _Undecodable(len(raw))


class _Servicer:
    def __init__(self, server: BridgeServer) -> None:
        self._server = server

    def Session(self, request_iterator, context):
        server = self._server
        peer = context.peer()
        requests = _parsed(request_iterator)
        # A connection that never says hello is cut off, freeing its thread.
        timer = threading.Timer(server.handshake_timeout, context.cancel)
        timer.daemon = True
        timer.start()
        try:
            first = next(requests)
        except Exception as exc:  # StopIteration, or RpcError when cancelled / dropped
            log.info("bridge: %s left before its handshake finished (%r)", peer, exc)
            return
        finally:
            timer.cancel()
        if isinstance(first, _Undecodable):
            server._note_refusal(peer, first.problem)
            yield pb.TrainerMessage(error=pb.Error(message=first.problem, field="message"))
            return
        try:
            hello, specs, masked, key = server._check_hello(first)
        except _Refused as exc:
            server._note_refusal(peer, str(exc))
            yield pb.TrainerMessage(refusal=pb.Refusal(reason=str(exc)))
            return
        session = _GrpcSession(requests, context, hello, specs, masked, peer)
        context.add_callback(session.on_rpc_done)
        yield server._welcome(hello)
        if not server._hand_over(session, key):
            yield pb.TrainerMessage(close=pb.Close(reason="this engine's launch was withdrawn"))
            return
        yield from session.serve()
