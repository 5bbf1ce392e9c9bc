"""The bridge's wire format, shared by both ends and owned by neither: constants, TCP framing, tensors.

The trainer (``sparring.envs.bridge``) and the Python engine SDK (``sparring_engine``)
both import this module, and it imports nothing of either: numpy and the generated
protobuf code only, so a game installs it without the trainer. What it holds is
the part of ``protos/README.md`` that is not a message: how a frame is delimited,
how a tensor's bytes are laid out, the version and the defaults.
"""

from __future__ import annotations

import ctypes
import math
import socket
import struct
import time

import numpy as np

from sparring.protos.sparring.v1 import bridge_pb2 as pb

PROTOCOL_VERSION = 1
"""``Hello.protocol_version`` and ``Welcome.protocol_version``: additions made within sparring.v1."""
MAX_AGENT_ID = 2**32 - 1
"""Agent ids lie in [0, MAX_AGENT_ID] (the trainer folds several engines' ids into one int64 each)."""
DEFAULT_GRPC_PORT = 5105
"""The port an engine tries over gRPC when it is not told one (editor mode)."""
DEFAULT_TCP_PORT = 5106
"""The port an engine tries over framed TCP when it is not told one."""
DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20
"""The largest message either side sends or accepts unless configured otherwise (``max_message_bytes``)."""

FRAME_HEADER = struct.Struct("<I")
"""A TCP frame's length prefix: 4 bytes, little-endian unsigned."""


class ProtocolError(ValueError):
    """A message that breaks the protocol; ``field`` is the path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# -- TCP framing ---------------------------------------------------------------


def write_frame(sock: socket.socket, message: pb.EngineMessage | pb.TrainerMessage) -> None:
    """Send ``message`` as one length-prefixed frame (header and payload gathered by the kernel, never joined here:
    joining them would copy a 256 KB observation batch once more every step)."""
    payload = message.SerializeToString()
    if not hasattr(sock, "sendmsg"):  # pragma: no cover - Windows
        sock.sendall(FRAME_HEADER.pack(len(payload)) + payload)
        return
    parts = [FRAME_HEADER.pack(len(payload)), memoryview(payload)]
    while parts:
        sent = sock.sendmsg(parts)
        while parts and sent >= len(parts[0]):
            sent -= len(parts[0])
            parts.pop(0)
        if parts:
            parts[0] = parts[0][sent:]


def read_exactly(sock: socket.socket, n: int, deadline: float | None) -> bytearray:
    """``n`` bytes from ``sock``; ``TimeoutError`` past ``deadline`` (monotonic), ``ConnectionError`` at EOF."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{got} of {n} bytes arrived before the deadline")
            sock.settimeout(remaining)
        else:
            sock.settimeout(None)
        try:
            k = sock.recv_into(view[got:])
        except socket.timeout:
            raise TimeoutError(f"{got} of {n} bytes arrived before the deadline") from None
        if k == 0:
            raise ConnectionError("the connection was closed by the other side" if got == 0 else
                                  f"the connection closed {got} bytes into a {n}-byte read")
        got += k
    return buf


def read_frame_size(sock: socket.socket, max_bytes: int, deadline: float | None) -> int:
    """The next frame's length; ``ValueError`` naming the size and the limit if it is over ``max_bytes``."""
    (size,) = FRAME_HEADER.unpack(read_exactly(sock, FRAME_HEADER.size, deadline))
    if size > max_bytes:
        raise ValueError(f"frame of {size} bytes exceeds the limit of {max_bytes} bytes (max_message_bytes)")
    return size


# -- tensors -------------------------------------------------------------------

DTYPES: dict[int, np.dtype] = {
    pb.FLOAT32: np.dtype("<f4"),
    pb.FLOAT64: np.dtype("<f8"),
    pb.INT8: np.dtype("i1"),
    pb.UINT8: np.dtype("u1"),
    pb.INT32: np.dtype("<i4"),
    pb.INT64: np.dtype("<i8"),
    pb.BOOL: np.dtype("?"),
}
"""``DType`` enum value -> the numpy dtype of its bytes."""
DTYPE_CODES: dict[str, int] = {dt.name: code for code, dt in DTYPES.items()}
"""numpy dtype name -> ``DType`` enum value (``"float32"`` -> ``FLOAT32``)."""


def fill_tensor(tensor: pb.Tensor, array: np.ndarray) -> pb.Tensor:
    """Write a numpy array into ``tensor`` (little-endian, C order), in place.

    Filling the field where it lives avoids the copy a ``CopyFrom`` of a separately
    built Tensor would make: at 256 KB per observation batch, copies are the cost.
    """
    array = np.asarray(array)
    code = DTYPE_CODES.get(array.dtype.name)
    if code is None:
        raise TypeError(f"dtype {array.dtype} cannot travel over the bridge; use one of {sorted(DTYPE_CODES)}")
    tensor.dtype = code
    tensor.shape[:] = array.shape
    tensor.data = np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    return tensor


def encode_tensor(array: np.ndarray) -> pb.Tensor:
    """A numpy array as a new Tensor message."""
    return fill_tensor(pb.Tensor(), array)


def decode_tensor(tensor: pb.Tensor, field: str) -> np.ndarray:
    """A read-only numpy view of a Tensor's bytes, after checking dtype, shape and length."""
    dtype = DTYPES.get(tensor.dtype)
    if dtype is None:
        raise ProtocolError(f"{field}.dtype", f"unknown dtype {tensor.dtype}")
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise ProtocolError(f"{field}.shape", f"negative dimension in {list(shape)}")
    expected = math.prod(shape) * dtype.itemsize
    data = tensor.data  # each read of a bytes field makes a new bytes object: read it once
    if len(data) != expected:
        raise ProtocolError(f"{field}.data", f"{len(data)} bytes for shape {list(shape)} of {dtype.name} ({expected} expected)")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype.kind == "b" and array.size and np.frombuffer(data, np.uint8).max() > 1:
        raise ProtocolError(f"{field}.data", "BOOL elements must be bytes 0 or 1")
    if dtype.byteorder == "<" and not np.little_endian:  # pragma: no cover - big-endian hosts only
        array = array.astype(dtype.newbyteorder("="))
    return array


def expect(array: np.ndarray, field: str, dtype: np.dtype, shape: tuple[int | None, ...]) -> np.ndarray:
    """``array`` if it has ``dtype`` and ``shape`` (None matches any size), else a ProtocolError naming ``field``."""
    ok = array.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, array.shape))
    if array.dtype != dtype or not ok:
        want = ", ".join("n" if s is None else str(s) for s in shape)
        raise ProtocolError(field, f"expected {dtype.name} ({want}), got {array.dtype.name} {list(array.shape)}")
    return array


def keep_message_buffers_mapped() -> None:
    """Ask glibc to keep freed large buffers mapped instead of returning them to the kernel.

    Every step allocates and frees a few buffers the size of a message (256 KB for
    1024 agents x 64 floats). By default glibc serves such sizes with fresh mmaps
    and unmaps them on free, so each step pays page faults on every byte: 0.4 ms
    to build and serialize one 1024-agent message here, against 15 us once freed
    memory stays mapped. Called once by each side of the bridge; a no-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    libc.mallopt(m_mmap_threshold, 64 << 20)
    libc.mallopt(m_trim_threshold, 256 << 20)
