"""Launch copies of a game build for the trainer: command line, per-launch token, log files, and killing them.

Each copy is started as::

    executable *args --sparring-host HOST --sparring-port PORT --sparring-transport grpc|tcp --sparring-token TOKEN
        [--sparring-ca FILE] [headless flags]

every flag followed by its value as a separate argument (protos/README.md, "Launched engines");
``--sparring-ca`` only when the trainer speaks TLS, naming the certificate file to trust.

in its own process group (so ``kill`` also takes down whatever the game itself
started), with stdout and stderr written to one log file per launch. Every
launch gets a fresh token from :func:`secrets.token_urlsafe`: it authenticates
the copy and tells the trainer which slot a connecting engine belongs to.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger("sparring.bridge")


def new_token() -> str:
    """A fresh launch token, ``secrets.token_urlsafe``, never starting with ``-`` (a game would read it as a flag)."""
    while True:
        token = secrets.token_urlsafe(24)
        if not token.startswith("-"):
            return token


def connect_host(host: str) -> str:
    """The address a launched copy on this machine connects to, for a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return "::1" if host == "::" else host


def describe_exit(returncode: int | None) -> str:
    """``"exited with code 3"``, ``"was killed by SIGKILL"``, or ``"is still running"``."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


class GameProcess:
    """One launched copy of the game.

    Attributes:
        slot: the engine slot it fills.
        token: the auth token it was given (``None``: its protocol has none).
        log_path: where its stdout and stderr go.
        command: the full command line (the token replaced by ``***`` for printing: :meth:`shown_command`).
    """

    def __init__(self, slot: int, token: str | None, command: list[str], log_path: Path, popen: subprocess.Popen) -> None:
        self.slot = slot
        self.token = token
        self.command = command
        self.log_path = log_path
        self._popen = popen
        self._killed = False

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def poll(self) -> int | None:
        """The exit code once it has exited (negative: killed by that signal), else ``None``."""
        return self._popen.poll()

    def wait(self, timeout: float) -> int | None:
        """The exit code if it exits within ``timeout`` seconds, else ``None``."""
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def describe(self, when: str = "") -> str:
        """``"game process 1234 exited with code 3 [when] (log: ...)"``, for error messages."""
        when = f" {when}" if when else ""
        return f"game process {self.pid} {describe_exit(self.poll())}{when} (log: {self.log_path})"

    def shown_command(self) -> str:
        return " ".join("***" if self.token is not None and part == self.token else part for part in self.command)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log, to show why it died."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self, grace: float = 0.0) -> int | None:
        """End the process and its group: SIGTERM, up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        if self._killed:
            return self._popen.poll()
        self._killed = True  # once: after that its group id may belong to someone else
        if self._popen.poll() is None:
            if grace > 0:
                _signal_group(self._popen, signal.SIGTERM)
                try:
                    self._popen.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            _signal_group(self._popen, signal.SIGKILL)
        elif os.name == "posix":
            _signal_group(self._popen, signal.SIGKILL)  # the game is gone; whatever it started goes too
        try:
            self._popen.wait(5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (uninterruptible sleep)
            log.warning("bridge: %s did not die within 5 s of SIGKILL", self.describe())
        return self._popen.poll()


def _signal_group(popen: subprocess.Popen, sig: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(popen.pid, sig)  # start_new_session: its pid is its group id
        elif sig == signal.SIGKILL:  # pragma: no cover - Windows
            popen.kill()
        else:  # pragma: no cover - Windows
            popen.terminate()
    except (ProcessLookupError, PermissionError):
        pass


class GameLauncher:
    """Starts copies of one game executable and kills them on :meth:`close`.

    Args:
        executable: the game build (or an interpreter, with the script in ``args``).
        args: arguments before the bridge flags (a scene, the game's own options, ...).
        host: the trainer's address the copies connect to (``--sparring-host``).
        transport: ``"grpc"`` or ``"tcp"``, the transport they must use (``--sparring-transport``).
        ca_file: the certificate file they verify the trainer with (``--sparring-ca``), when it speaks TLS.
        headless_args: appended last, for builds that can run without a window
            (e.g. ``["--headless"]``, Unity's ``["-batchmode", "-nographics"]``).
        log_dir: folder for one log per launch (``slot{N}-{launch}.log``, launch counting from 1
            per slot); a fresh temp folder if ``None``.
        env: environment variables to set on top of this process's environment.
        cwd: working directory of the game.
    """

    def __init__(
        self,
        executable: str | os.PathLike,
        args: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        transport: str = "grpc",
        ca_file: str | os.PathLike | None = None,
        headless_args: Sequence[str] = (),
        log_dir: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> None:
        self.executable = os.fspath(executable)
        self.args = [str(a) for a in args]
        self.host, self.transport = host, transport
        self.ca_file = None if ca_file is None else os.fspath(ca_file)
        self.headless_args = [str(a) for a in headless_args]
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="sparring-engines-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.cwd = cwd
        self.processes: list[GameProcess] = []  # every launch, oldest first
        self._launches: dict[int, int] = {}  # per slot
        # Kill the games even if the trainer forgets close() (or dies on an exception).
        self._finalizer = weakref.finalize(self, _kill_all, self.processes)

    def command(self, port: int, token: str) -> list[str]:
        tls = [] if self.ca_file is None else ["--sparring-ca", self.ca_file]
        return [self.executable, *self.args, "--sparring-host", self.host, "--sparring-port", str(port),
                "--sparring-transport", self.transport, "--sparring-token", token, *tls, *self.headless_args]

    def launch(self, slot: int, port: int, token: str | None = None) -> GameProcess:
        """Start one copy that will connect to ``port``; its token is fresh unless given."""
        token = token or new_token()
        return self.start(slot, self.command(port, token), token)

    def start(self, slot: int, command: list[str], token: str | None = None) -> GameProcess:
        """Start one copy for ``slot`` with a command line of the caller's own (a protocol with other flags);
        ``token``, if it carries one, is masked when the command is shown."""
        self._launches[slot] = count = self._launches.get(slot, 0) + 1
        log_path = self.log_dir / f"slot{slot}-{count}.log"
        with open(log_path, "wb") as log_file:
            try:
                popen = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **self.env},
                    cwd=self.cwd,
                    start_new_session=os.name == "posix",
                    creationflags=subprocess.CREATE_NEW_PROCESS_GROUP if sys.platform == "win32" else 0,
                )
            except OSError as exc:
                raise OSError(f"cannot launch the game {command[0]!r} for slot {slot}: {exc}") from exc
        process = GameProcess(slot, token, command, log_path, popen)
        self.processes.append(process)
        log.info("launched game slot %d as pid %d: %s (log: %s)",
                 slot, process.pid, process.shown_command(), log_path)
        return process

    def close(self) -> None:
        """Kill every copy still running."""
        _kill_all(self.processes)

    def __enter__(self) -> GameLauncher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill_all(processes: list[GameProcess]) -> None:
    for process in processes:
        process.kill()
    deadline = time.monotonic() + 1.0
    while processes and time.monotonic() < deadline and any(p.poll() is None for p in processes):
        time.sleep(0.01)
