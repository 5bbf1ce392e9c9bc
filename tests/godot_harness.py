"""A small trainer-side stand-in that drives a real headless Godot game over the bridge's TCP transport.

Tests use it to speak the protocol with ``engines/godot/example`` exactly as the
trainer will: a loopback server, the game launched with ``--sparring-port`` and
``--sparring-token``, length-prefixed EngineMessage / TrainerMessage frames. Every
wait is bounded; ``close()`` always kills the process.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from sparring.protos.wire import decode_tensor, encode_tensor
from sparring.protos.sparring.v1 import bridge_pb2 as pb

GODOT = shutil.which("godot3-server")
PROJECT = Path(__file__).resolve().parents[1] / "engines" / "godot" / "example"

def tensor(t: pb.Tensor) -> np.ndarray:
    """A Tensor message as a numpy array (the trainer's own decoding, which checks the bytes fit the shape)."""
    return decode_tensor(t, "tensor")


make_tensor = encode_tensor


class GodotSession:
    """One headless Godot process connected to a loopback server, frame by frame; over TLS with ``tls``, the
    trainer's server-side context (a failed handshake waits for godot to say why, and raises with what it said)."""

    def __init__(self, scene: str | None = None, token: str = "test-token", args: tuple[str, ...] = (),
                 timeout: float = 30.0, tls: ssl.SSLContext | None = None) -> None:
        if GODOT is None:
            raise RuntimeError("godot3-server is not on PATH (apt-get install godot3-server)")
        self.timeout = timeout
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        port = self.server.getsockname()[1]
        self.log = tempfile.TemporaryFile()
        command = [GODOT, "--path", str(PROJECT)]
        if scene:
            command.append(scene)
        command += ["--sparring-port", str(port), "--sparring-token", token, *args]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.conn: socket.socket | None = None
        deadline = time.monotonic() + timeout
        try:
            while self.conn is None:
                if self.process.poll() is not None:
                    raise RuntimeError(f"godot exited with {self.process.returncode} before connecting:\n{self.output}")
                if "SCRIPT ERROR" in self.output:  # Godot keeps running a scene whose scripts failed to load
                    raise RuntimeError(f"godot could not load the game's scripts:\n{self.output}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"godot did not connect within {timeout} s:\n{self.output}")
                try:
                    self.conn, _ = self.server.accept()
                except socket.timeout:
                    pass
            if tls is not None:
                self.conn = self._secured(self.conn, tls)
        except BaseException:
            self.close()
            raise
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn.settimeout(timeout)

    def _secured(self, conn: socket.socket, tls: ssl.SSLContext) -> ssl.SSLSocket:
        conn.settimeout(self.timeout)
        try:
            return tls.wrap_socket(conn, server_side=True)
        except OSError as exc:
            self.conn = None
            try:
                self.process.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                pass
            raise RuntimeError(f"TLS handshake failed ({getattr(exc, 'reason', None) or exc}); godot said:\n"
                               f"{self.output}") from None

    # -- frames ------------------------------------------------------------------

    def send(self, **message) -> None:
        """Send a TrainerMessage, e.g. ``send(reset=pb.Reset(seed=1))``."""
        body = pb.TrainerMessage(**message).SerializeToString()
        self.conn.sendall(struct.pack("<I", len(body)) + body)

    def receive(self) -> pb.EngineMessage:
        (size,) = struct.unpack("<I", self._read(4))
        msg = pb.EngineMessage()
        msg.ParseFromString(self._read(size))
        return msg

    def _read(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self.conn.recv(min(left, 1 << 20))
            if not chunk:
                raise ConnectionError(f"godot closed the connection (exit code {self.process.poll()}):\n{self.output}")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    # -- session helpers -----------------------------------------------------------

    def handshake(self, seed: int = 0, **parameters: float) -> pb.Hello:
        """Read the Hello and answer with a Welcome."""
        msg = self.receive()
        assert msg.WhichOneof("message") == "hello", msg
        self.send(welcome=pb.Welcome(protocol_version=1, seed=seed, environment_parameters=parameters))
        return msg.hello

    def reset(self, seed: int = 0, **parameters: float) -> pb.Observations:
        self.send(reset=pb.Reset(seed=seed, environment_parameters=parameters))
        return self.observations()

    def step(self, step: int, actions: dict[str, np.ndarray], **parameters: float) -> pb.Observations:
        """Send Actions (``parameters``: new environment parameter values they carry) and read the answer."""
        self.send(actions=pb.Actions(step=step, environment_parameters=parameters, behaviours=[
            pb.BehaviourActions(behaviour=name, actions=make_tensor(batch)) for name, batch in actions.items()]))
        return self.observations()

    def observations(self) -> pb.Observations:
        msg = self.receive()
        assert msg.WhichOneof("message") == "observations", msg
        return msg.observations

    def wait(self, timeout: float | None = None) -> int:
        """The process's exit code, once it has exited."""
        return self.process.wait(timeout=self.timeout if timeout is None else timeout)

    @property
    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for sock in (self.conn, self.server):
            if sock is not None:
                sock.close()

    def __enter__(self) -> GodotSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self.log.close()
