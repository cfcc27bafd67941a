"""Writing a run's files so that a full disk (or a used-up quota, a read-only file system, a failing
disk) never damages what was there, and ends `train.py` with one line that says what could not be
written and how the run goes on.

`write_atomically` writes a whole file's bytes (already in memory, so their size is known) to a
temporary file beside the file, forces it to disk and renames it over the old one; a write that
cannot fit fails before anything is written, and one that fails on the way removes its temporary
file. Its failures are `NotWritten` errors, which carry the file, the bytes needed and those free.
`write_failure` finds such a failure (or any OSError of `FAILURES`) behind an exception, and
`digits_zoo.training.messages.failure_message` turns it into the `error:` line.

(No torch or Lightning here: `digits_zoo.cli` imports this module before Hydra has read the command line.)
"""

from __future__ import annotations

import csv
import errno
import glob
import io
import os
import socket
from pathlib import Path

# what each errno means to the user, and what to do about it before the run goes on
FAILURES = {
    errno.ENOSPC: ("no space left on the device", "free space"),
    errno.EDQUOT: ("the disk quota is used up", "free space within the quota"),
    errno.EROFS: ("the file system is read-only", "make it writable"),
    errno.EIO: ("an input/output error (a failing disk, or a network file system that went away)", "check the disk"),
}


class NotWritten(OSError):
    """A file that could not be written: the OSError's errno and strerror, its `filename`, the bytes
    it `needed` and those `free` before the write began (None where not known)."""

    def __init__(self, cause: OSError, path: Path, needed: int | None, free: int | None):
        super().__init__(cause.errno, cause.strerror or os.strerror(cause.errno), str(path))
        self.needed, self.free = needed, free


def free_bytes(folder: Path) -> int | None:
    """The bytes that this process can still write in `folder`'s file system (root may also use the
    blocks reserved for it), or None where the file system does not say (e.g. FUSE mounts report no size)."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # (no statvfs on Windows)
        return None
    if not stats.f_blocks:
        return None
    return (stats.f_bfree if os.geteuid() == 0 else stats.f_bavail) * stats.f_frsize


def _write(file, data) -> None:
    file.write(data)


def temporary_beside(path: Path) -> Path:
    """`.NAME.HOST.PID.tmp` beside `path`: processes that write the same file at once (a sweep's workers, runs
    filling the benchmark's shared cache, machines sharing a folder) each write their own."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def _remove_leftovers(path: Path) -> None:
    """The temporary files of `path` left by killed processes of this machine (their space counts as free);
    those of live processes, and of other machines, stay."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.{glob.escape(socket.gethostname())}.*.tmp"):
        pid = leftover.name.rsplit(".", 2)[1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # (a PermissionError: another user's, alive)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def write_atomically(path: str | Path, data: bytes | bytearray | memoryview) -> None:
    """Replace `path` with `data` so that it is the old file or the new one, whatever happens: written to
    a temporary file of this process beside it (`temporary_beside`), forced to disk, then renamed over it. A
    write that the file system has no room for fails before it begins. Any failure removes the temporary
    file; a full disk, a quota, a read-only file system or a disk error raises `NotWritten`."""
    path = Path(path)
    temporary = temporary_beside(path)
    needed, free = memoryview(data).nbytes, None
    try:
        _remove_leftovers(path)
        free = free_bytes(path.parent)
        if free is not None and needed > free:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        with open(temporary, "wb") as file:
            _write(file, data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        sync_folder(path.parent)
    except BaseException as error:  # (Ctrl+C too: nothing is left behind)
        try:
            temporary.unlink(missing_ok=True)
        except OSError:  # e.g. a read-only file system, where there is none
            pass
        if isinstance(error, OSError) and error.errno in FAILURES:
            raise NotWritten(error, path, needed, free) from error
        raise


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, text.encode())


def write_csv_atomically(path: str | Path, rows) -> None:
    """`rows` (the header first) as a CSV file, written atomically."""
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    write_text_atomically(path, text.getvalue())


def sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (the folder's entry), where the system allows opening folders."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_failure(error: BaseException) -> OSError | None:
    """The write that failed behind `error`, where a full disk, a quota, a read-only file system or a
    disk error is the cause: `error` itself or an exception it was raised from or while handling (a
    failed save, then a logger that failed to write in Lightning's clean-up). A `NotWritten` comes first."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    # (EIO only from this module's writes: elsewhere it may have been a read)
    failures = [
        e
        for e in chain
        if isinstance(e, NotWritten) or (isinstance(e, OSError) and e.errno in FAILURES and e.errno != errno.EIO)
    ]
    return next((e for e in failures if isinstance(e, NotWritten)), failures[0] if failures else None)


def shown(path: str | Path) -> str:
    """`path` as the user would type it here: relative to the working directory where it lies in it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def size(count: int) -> str:
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
