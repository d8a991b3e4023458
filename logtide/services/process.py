"""Start and stop service processes we own, tracked by pid files.

Each service is started as the leader of its own session and process group, so it survives the
command that started it and `down` can signal the whole group (Elasticsearch's launcher forks the
server JVM). A pid file is trusted only while that pid's command line still names our marker, so a
recycled pid never gets signalled.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
from pathlib import Path


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie (no-op for other processes)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int) -> bool:
    _reap(pid)
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def owned_pid(pid_file: Path, marker: str) -> int | None:
    """The pid from `pid_file` if that process is alive and is ours (its command line has `marker`)."""
    pid = read_pid(pid_file)
    if pid is None or not alive(pid) or marker not in _cmdline(pid):
        return None
    return pid


OPEN_FILES_WANTED = 262_144  # Kafka keeps 2-3 files per partition segment open; ES asks for 65,535


def raise_open_files_limit() -> None:
    """Give the servers we start (they inherit it) as many open files as allowed.

    Many machines start processes with a soft limit of 1,024 under a much higher hard one; a development
    broker with a few thousand partitions runs out and then refuses every connection ("Too many open
    files"), which looks like a broker that is down. Where the hard limit cannot be raised (a container
    without CAP_SYS_RESOURCE) the soft one is raised to it.
    """
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else max(hard, OPEN_FILES_WANTED)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root may raise the hard limit
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # others: up to the hard limit


def spawn(
    cmd: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    out_file: Path,
    pid_file: Path,
    user: str | None = None,
) -> int:
    """Start `cmd` detached in its own session, stdout/stderr to `out_file`; record and return its pid."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit()
    with out_file.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _group_alive(pgid: int) -> bool:
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only a zombie leader left (our own child, already reaped above, or one init will reap)?
    members = [p for p in _pids_in_group(pgid) if not _is_zombie(p)]
    return bool(members)


def _pids_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            if os.getpgid(int(entry.name)) == pgid:
                pids.append(int(entry.name))
    return pids


def _pids_with_marker(marker: str) -> list[int]:
    """Java processes of ours that escaped the group (belt and braces for `down`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        cmdline = _cmdline(int(entry.name))
        if marker in cmdline and cmdline.split(" ", 1)[0].endswith("java"):
            found.append(int(entry.name))
    return found


def _wait(predicate_alive, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not predicate_alive():
            return True
        time.sleep(0.2)
    return not predicate_alive()


def stop(pid_file: Path, marker: str, timeout: float = 30.0) -> bool:
    """Stop the service recorded in `pid_file`: SIGTERM its process group, wait, then SIGKILL.

    Returns True if something of ours was running. The pid file is removed either way.
    """
    pid = owned_pid(pid_file, marker)
    stray = [p for p in _pids_with_marker(marker) if p != pid]
    if pid is None and not stray:
        pid_file.unlink(missing_ok=True)
        return False

    def anything_alive() -> bool:
        group = pid is not None and _group_alive(pid)
        return group or any(alive(p) for p in stray)

    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        for p in stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        if _wait(anything_alive, wait_s):
            break
    pid_file.unlink(missing_ok=True)
    return True
