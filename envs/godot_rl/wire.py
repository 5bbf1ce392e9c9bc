"""How a Godot RL Agents game and its trainer frame their JSON messages, and what can go wrong on the way.

Every message either way is one JSON object, sent as Godot's ``StreamPeer.put_string`` writes a string:
a 4-byte little-endian unsigned length, then that many bytes of text (ASCII: ``put_string`` sends
``String.ascii()``, and ``json.dumps`` escapes everything else). The game reads it back with
``get_string``. Nothing else is on the wire: no message ids, no acknowledgements.

Every failure of a game is a :class:`GameError`, so the fleet that supervises games
(:mod:`sparring.envs.godot_rl.env`) catches exactly these and nothing of its own.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

HEADER = struct.Struct("<I")


class GameError(RuntimeError):
    """A game broke the session: it went away, stopped answering, or sent something the protocol does not allow."""


class GameClosed(GameError):
    """The game closed its connection (it quit or crashed)."""


class GameTimeout(GameError):
    """The game did not answer in time."""


class GameProtocolError(GameError):
    """The game sent a message the protocol does not allow; the text names the message and the field."""


class Connection:
    """One game's TCP connection, sending and receiving whole JSON messages.

    Args:
        sock: the accepted socket.
        name: how messages name this game (``"game 0 (127.0.0.1:11008)"``).
        max_message_bytes: the longest message accepted; a longer length prefix is refused before
            anything is allocated (garbage on the wire reads as a huge length).
    """

    def __init__(self, sock: socket.socket, name: str, max_message_bytes: int = 64 * 2**20) -> None:
        self.sock = sock
        self.name = name
        self.max_message_bytes = max_message_bytes
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, message: dict[str, Any], timeout: float) -> None:
        """Send one message; a game that is gone raises :class:`GameClosed`."""
        body = json.dumps(message, allow_nan=False, separators=(",", ":")).encode("ascii")
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(HEADER.pack(len(body)) + body)
        except socket.timeout:
            raise GameTimeout(f"{self.name}: could not send the {message['type']!r} message within {timeout:g} s") from None
        except OSError as exc:
            raise GameClosed(f"{self.name}: connection lost while sending the {message['type']!r} message ({exc})") from None

    def receive(self, awaited: str, deadline: float) -> dict[str, Any]:
        """The next message, a JSON object with a string ``type``; ``awaited`` names it in errors
        (``"the reply to 'action'"``). Raises :class:`GameTimeout` past ``deadline`` (``time.monotonic()``)."""
        (length,) = HEADER.unpack(self._read(HEADER.size, awaited, deadline))
        if length > self.max_message_bytes:
            raise GameProtocolError(f"{self.name}: {awaited}: length prefix {length} exceeds max_message_bytes="
                                    f"{self.max_message_bytes} (a 4-byte little-endian length must precede each JSON text)")
        body = self._read(length, awaited, deadline)
        try:
            message = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise GameProtocolError(f"{self.name}: {awaited}: not UTF-8 text at byte {exc.start}") from None
        except json.JSONDecodeError as exc:
            raise GameProtocolError(f"{self.name}: {awaited}: malformed JSON ({exc.msg} at line {exc.lineno} column "
                                    f"{exc.colno}): {_excerpt(body, exc.pos)}") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise GameProtocolError(f"{self.name}: {awaited}: expected a JSON object with a string 'type', got "
                                    f"{_excerpt(body, 0)}")
        return message

    def _read(self, size: int, awaited: str, deadline: float) -> bytes:
        chunks, missing = [], size
        while missing:
            left = deadline - time.monotonic()
            if left <= 0:
                arrived = f" ({size - missing} of {size} bytes arrived)" if missing < size else ""
                raise GameTimeout(f"{self.name}: {awaited} did not arrive in time{arrived}")
            try:
                self.sock.settimeout(left)
                chunk = self.sock.recv(min(missing, 1 << 20))
            except socket.timeout:
                continue
            except OSError as exc:
                raise GameClosed(f"{self.name}: connection lost awaiting {awaited} ({exc})") from None
            if not chunk:
                raise GameClosed(f"{self.name}: the game closed the connection awaiting {awaited}")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _excerpt(body: bytes, position: int) -> str:
    """Up to 60 characters of ``body`` around ``position``, for an error message."""
    start = max(0, position - 30)
    return repr(body[start:start + 60].decode("utf-8", "replace"))
