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
import ssl
import struct
import time

import numpy as np

from sparring.protos.sparring.v1 import bridge_pb2 as pb

PROTOCOL_VERSION = 3
"""``Hello.protocol_version`` and ``Welcome.protocol_version``: additions made within sparring.v1 (2: groups,
game statistics, environment parameters in Actions; 3: played actions and recording sessions). A trainer speaks
every version from 1 up to its own."""
MAX_AGENT_ID = 2**32 - 1
"""Agent ids lie in [0, MAX_AGENT_ID] (the trainer folds several engines' ids into one int64 each)."""
DEFAULT_GRPC_PORT = 5105
"""The port an engine tries over gRPC when it is not told one (editor mode)."""
DEFAULT_TCP_PORT = 5106
"""The port an engine tries over framed TCP when it is not told one."""
DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20
"""The largest message either side sends or accepts unless configured otherwise (``max_message_bytes``)."""

STAT_AGGREGATIONS: dict[str, int] = {
    value.name.lower(): value.number for value in pb.StatAggregation.DESCRIPTOR.values}
"""A game statistic's aggregation by name (``"average"``, ``"most_recent"``, ``"sum"``, ``"histogram"``) -> its
``StatAggregation`` number; the names are the env API's (``sparring.envs.base.STAT_AGGREGATIONS``)."""

FRAME_HEADER = struct.Struct("<I")
"""A TCP frame's length prefix: 4 bytes, little-endian unsigned."""


class ProtocolError(ValueError):
    """A message that breaks the protocol; ``field`` is the path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# -- TCP framing ---------------------------------------------------------------


def write_frame(sock: socket.socket, message: pb.EngineMessage | pb.TrainerMessage | Serialized) -> None:
    """Send ``message`` as one length-prefixed frame; a :class:`Serialized` one goes out by reference, its
    buffers gathered by the kernel and never joined here (joining would copy a 256 KB observation batch
    once more every step)."""
    if not isinstance(message, Serialized):
        payload = message.SerializeToString()
        message = Serialized([payload], len(payload))
    if isinstance(sock, ssl.SSLSocket) or not hasattr(sock, "sendmsg"):  # TLS encrypts one buffer; Windows lacks it
        sock.sendall(b"".join([FRAME_HEADER.pack(message.size), *message.buffers]))
        return
    parts = [memoryview(FRAME_HEADER.pack(message.size)), *(memoryview(b).cast("B") for b in message.buffers)]
    while parts:
        sent = sock.sendmsg(parts[:1024])  # IOV_MAX
        while parts and sent >= parts[0].nbytes:
            sent -= parts[0].nbytes
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
_CODE_OF: dict[np.dtype, int] = {dt: code for code, dt in DTYPES.items()}
"""numpy dtype (native or little-endian) -> ``DType``: ``np.dtype.name`` is computed in Python, too slow per step."""


def fill_tensor(tensor: pb.Tensor, array: np.ndarray) -> pb.Tensor:
    """Write a numpy array into ``tensor`` (little-endian, C order), in place.

    Filling the field where it lives avoids the copy a ``CopyFrom`` of a separately
    built Tensor would make: at 256 KB per observation batch, copies are the cost.
    """
    code, array = _wire_array(array)
    tensor.dtype = code
    tensor.shape[:] = array.shape
    tensor.data = array.tobytes()
    return tensor


def _wire_array(array: np.ndarray) -> tuple[int, np.ndarray]:
    """``(DType, array)`` with the array as a tensor carries it: little-endian, C order (a view when it already is)."""
    array = np.asarray(array)
    code = _CODE_OF.get(array.dtype)
    if code is None:
        code = DTYPE_CODES.get(array.dtype.name)  # a big-endian array, converted below
    if code is None:
        raise TypeError(f"dtype {array.dtype} cannot travel over the bridge; use one of {sorted(DTYPE_CODES)}")
    array = np.asarray(array, DTYPES[code])
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)  # (which would make a 0-d array 1-d)
    return code, array


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
    array = _checked_bools(np.frombuffer(data, dtype=dtype).reshape(shape), field)
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


def read_tensor(tensor: pb.Tensor, field: str, dtype: np.dtype, shape: tuple[int | None, ...]) -> np.ndarray:
    """``expect(decode_tensor(tensor, field), field, dtype, shape)``; only a leading dimension may be None.

    It runs for every tensor of every step, so a tensor as expected costs a few
    comparisons, and the diagnosis (which field is wrong, and how) runs only when
    one is not.
    """
    got = tuple(tensor.shape)
    want = (got[0], *shape[1:]) if shape and shape[0] is None and got else shape
    data = tensor.data  # each read of a bytes field makes a new bytes object: read it once
    if (tensor.dtype == _CODE_OF.get(dtype) and got == want and (not got or got[0] >= 0)
            and len(data) == math.prod(got) * dtype.itemsize and np.little_endian):
        return _checked_bools(np.frombuffer(data, dtype).reshape(got), field)
    return expect(decode_tensor(tensor, field), field, dtype, shape)


def _checked_bools(array: np.ndarray, field: str) -> np.ndarray:
    if array.dtype.kind == "b" and array.size and array.view(np.uint8).max() > 1:
        raise ProtocolError(f"{field}.data", "BOOL elements must be bytes 0 or 1")
    return array


# -- serializing by reference -------------------------------------------------
#
# The step messages are mostly tensor bytes. Serializing them through protobuf's
# message classes copies every tensor three times (into the field, into the
# serialized string, into the frame); the writer below lays out the same protobuf
# encoding (the bytes ``SerializeToString`` gives, field for field) as a list of
# buffers that reference the arrays themselves, for the kernel to gather.

_VARINT_1 = [bytes([i]) for i in range(128)]


def varint(value: int) -> bytes:
    """``value`` as a protobuf varint (negative values as 10-byte two's complement, as int64 fields carry them)."""
    if 0 <= value < 128:
        return _VARINT_1[value]
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class Serialized:
    """A serialized protobuf message as buffers in order (``bytes`` and byte views of numpy arrays), and its size.

    Built field by field in field-number order, omitting defaults as proto3 does, so the
    bytes are exactly what protobuf's ``SerializeToString`` gives for the same message.
    The arrays are referenced, not copied: they must not change until the message is sent.
    """

    __slots__ = ("buffers", "size")

    def __init__(self, buffers: list | None = None, size: int = 0) -> None:
        self.buffers = [] if buffers is None else buffers
        self.size = size

    def raw(self, data: bytes) -> None:
        self.buffers.append(data)
        self.size += len(data)

    def uint(self, number: int, value: int) -> None:
        """A varint field (uint64, int64, enum, bool), left out when 0."""
        if value:
            self.raw(varint(number << 3) + varint(value))

    def string(self, number: int, text: str) -> None:
        if text:
            data = text.encode()
            self.raw(varint(number << 3 | 2) + varint(len(data)) + data)

    def message(self, number: int, sub: Serialized) -> None:
        """A message field (always written, even empty: it is set)."""
        self.raw(varint(number << 3 | 2) + varint(sub.size))
        self.buffers.extend(sub.buffers)
        self.size += sub.size

    def tensor(self, number: int, array: np.ndarray) -> None:
        """A Tensor field holding ``array`` (little-endian, C order), its bytes by reference."""
        code, array = _wire_array(array)
        head = _VARINT_1[8] + _VARINT_1[code]  # field 1, dtype
        if array.ndim:
            shape = b"".join(varint(d) for d in array.shape)
            head += b"\x12" + varint(len(shape)) + shape  # field 2, packed
        nbytes = array.nbytes
        if nbytes:
            head += b"\x1a" + varint(nbytes)  # field 3, data
        self.raw(varint(number << 3 | 2) + varint(len(head) + nbytes) + head)
        if nbytes:
            self.buffers.append(array.reshape(-1).view(np.uint8))
            self.size += nbytes

    def tobytes(self) -> bytes:
        """The message as one ``bytes`` (one copy of everything), for gRPC, which sends nothing else."""
        return b"".join(self.buffers)


def to_bytes(message: pb.EngineMessage | pb.TrainerMessage | Serialized) -> bytes:
    """Either kind of message (a protobuf one or a :class:`Serialized`) as bytes: the Session stream's serializer,
    the trainer's for its replies and the engine's for its requests."""
    return message.tobytes() if isinstance(message, Serialized) else message.SerializeToString()


_SESSION = pb.DESCRIPTOR.services_by_name["Bridge"].methods_by_name["Session"]
SESSION_METHOD = f"/{_SESSION.containing_service.full_name}/{_SESSION.name}"
"""The gRPC method engines call: ``/sparring.v1.Bridge/Session``."""


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
