"""Background processes that outlive the Python process that started them.

A :class:`ManagedProcess` runs in its own session (so its whole process group can be
signalled), appends stdout and stderr to ``<state_dir>/logs/<name>.log`` and records
itself in ``<state_dir>/run/<name>.pid``. The pid file keeps the kernel start time and
boot id next to the pid, so a later CLI invocation only ever signals a process that is
really the one it started, never an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


class StackError(RuntimeError):
    """A component of the embedded stack could not be prepared, started or stopped."""


class MissingDependencyError(StackError):
    """A program or package the stack needs is not installed."""


class PortInUseError(StackError):
    """A port the stack wants to listen on is taken."""


@dataclass(frozen=True)
class ProcessStatus:
    """What a pid file says and whether that process is still alive."""

    name: str
    pid: int | None
    alive: bool
    pid_file: Path
    log_file: Path


@dataclass(frozen=True)
class _ProcInfo:
    state: str
    ppid: int
    pgid: int
    start_ticks: int


def _proc_info(pid: int) -> _ProcInfo | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    return _ProcInfo(
        state=fields[0], ppid=int(fields[1]), pgid=int(fields[2]), start_ticks=int(fields[19])
    )


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is an exited child of this process, so it is not seen as alive."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def http_ok(url: str) -> bool:
    """``GET url`` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False  # not up, or not (yet) an HTTP server on that port


def bind_error(host: str, port: int) -> OSError | None:
    """Why a server could not listen on ``host:port`` now; None when it could."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port held only by TIME_WAIT connections is usable by the servers too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def ensure_port_free(port: int, setting: str) -> None:
    """Raise :class:`PortInUseError` naming ``setting`` (and its env var) if ``port`` is taken."""
    exc = bind_error("127.0.0.1", port)
    if exc is not None:
        raise PortInUseError(
            f"port {port} on 127.0.0.1 is already in use ({exc.strerror}); "
            f"stop what listens there or choose another port with "
            f"{setting} (env REVISIT_{setting.upper()})"
        ) from exc


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


class ManagedProcess:
    """A generic background process with a pid file and a log file under ``state_dir``.

    ``env`` is laid over ``os.environ`` (None: inherit it). ``run_as`` names a system user
    to run the command as through ``runuser`` (needed, as root, for PostgreSQL).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: Path | None,
        state_dir: Path,
        run_as: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.state_dir = Path(state_dir)
        self.run_as = run_as
        self._popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def attach(cls, name: str, state_dir: Path) -> ManagedProcess:
        """The process recorded in ``state_dir/run/<name>.pid`` (e.g. from another CLI call)."""
        proc = cls(name, [], None, None, state_dir)
        record = proc._read_record()
        if record is not None:
            proc.argv = [str(a) for a in record.get("argv", [])]
        return proc

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    # -- pid file ---------------------------------------------------------------------

    def _read_record(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.pid_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # A torn or foreign pid file: treat it as stale rather than trusting its pid.
            return None
        if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
            return None
        return record

    def _write_record(self, record: Mapping[str, Any]) -> None:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.pid_file.with_suffix(".pid.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(self.pid_file)

    def _is_ours(self, pid: int, record: Mapping[str, Any]) -> bool:
        _reap(pid)
        info = _proc_info(pid)
        if info is None or info.state in ("Z", "X"):
            return False
        return record.get("boot_id") == _boot_id() and info.start_ticks == record.get("start_ticks")

    def _members(self, record: Mapping[str, Any]) -> list[int]:
        """Live processes of our process group and their descendants.

        Descendants count because some servers move their children to groups of their own
        (PostgreSQL's backends call setsid()). The leader may already be gone.
        """
        pgid = int(record["pid"])
        if record.get("boot_id") != _boot_id():
            return []
        _reap(pgid)
        start = int(record.get("start_ticks", 0))
        leader = _proc_info(pgid)
        if leader is not None and leader.start_ticks != start:
            # Linux never hands out a pid still used as a group id: the pid was reused,
            # so our group is gone.
            return []
        table: dict[int, _ProcInfo] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                info = _proc_info(int(entry.name))
                # Ours all started after the leader: older processes are never ours.
                if info is not None and info.state not in ("Z", "X") and info.start_ticks >= start:
                    table[int(entry.name)] = info
        members = {pid for pid, info in table.items() if info.pgid == pgid}
        grew = True
        while grew:
            children = {pid for pid, info in table.items() if info.ppid in members} - members
            members |= children
            grew = bool(children)
        return sorted(members)

    # -- public -----------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The recorded pid if that process is alive and is the one we started."""
        record = self._read_record()
        if record is None:
            return None
        pid = int(record["pid"])
        return pid if self._is_ours(pid, record) else None

    def is_running(self) -> bool:
        return self.pid is not None

    def status(self) -> ProcessStatus:
        record = self._read_record()
        pid = int(record["pid"]) if record is not None else None
        alive = record is not None and pid is not None and self._is_ours(pid, record)
        return ProcessStatus(self.name, pid, alive, self.pid_file, self.log_file)

    def start(self) -> int:
        """Spawn the process in a new session and record it; returns its pid."""
        if self.is_running():
            raise StackError(f"{self.name} is already running (pid file {self.pid_file})")
        if not self.argv:
            raise StackError(f"{self.name}: no command to start")
        argv = self.argv
        if self.run_as is not None:
            if os.geteuid() != 0:
                raise StackError(f"{self.name}: run_as={self.run_as!r} needs root")
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        env = None if self.env is None else {**os.environ, **self.env}
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log: IO[bytes]
        with self.log_file.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n===== {stamp} starting {self.name}: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                self._popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                    close_fds=True,
                )
            except FileNotFoundError as exc:
                raise MissingDependencyError(
                    f"{self.name}: cannot run {argv[0]!r}: {exc.strerror}"
                ) from exc
        pid = self._popen.pid
        info = _proc_info(pid)
        self._write_record(
            {
                "name": self.name,
                "pid": pid,
                "start_ticks": info.start_ticks if info is not None else -1,
                "boot_id": _boot_id(),
                "argv": argv,
                "started_at": time.time(),
                "log_file": str(self.log_file),
            }
        )
        return pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the process group, wait up to ``timeout`` s, then SIGKILL.

        Returns True if something of ours was running. Removes the pid file.
        """
        record = self._read_record()
        if record is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        pgid = int(record["pid"])
        if not self._members(record):
            self._forget()
            return False
        for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            if sig == signal.SIGKILL:
                # Descendants that left the group (setsid) are not reached by killpg.
                for pid in self._members(record):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while self._members(record) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self._members(record):
                break
        left = self._members(record)
        if left:
            raise StackError(f"{self.name}: processes {left} survived SIGKILL")
        self._forget()
        return True

    def wait_gone(self, timeout: float) -> bool:
        """Wait until no process of our group is left; True if none is."""
        record = self._read_record()
        if record is None:
            return True
        deadline = time.monotonic() + timeout
        while self._members(record):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def alive_members(self) -> list[int]:
        """Pids of our process group still alive (empty if none or no pid file)."""
        record = self._read_record()
        return [] if record is None else self._members(record)

    def _forget(self) -> None:
        if self._popen is not None:
            # Reap our own child so Popen does not warn about a still-running process.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=1)
            self._popen = None
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_file, lines)


def managed_names(state_dir: Path) -> list[str]:
    """Names of all processes that have a pid file in ``state_dir/run``."""
    run_dir = Path(state_dir) / "run"
    if not run_dir.is_dir():
        return []
    return sorted(p.stem for p in run_dir.glob("*.pid"))
