"""The workspace's cross-process lock: one ``.lnq.lock`` file per workspace folder (the ``filelock`` library).

Every read-modify-write of the registry, the journal and the cache happens while it is held, and only
briefly (never across a fine-tune or a prediction). It is reentrant in a thread, excludes other threads
and other processes, and works on Linux, macOS and Windows (``fcntl`` / ``msvcrt`` locks, released by
the operating system when a process dies).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import CANNOT_WRITE, full_line, is_full, write_error
from lnq_napari.workspace.cases import gone_error

LOCK_FILE = ".lnq.lock"
TIMEOUT_S = 120.0  # a writer holds the lock for milliseconds; this long a wait means something is stuck
_LOCKS: dict[str, FileLock] = {}  # one FileLock per lock file in this process: nested use is reentrant
_GUARD = threading.Lock()
if hasattr(os, "register_at_fork"):  # a forked child must not use its parent's lock objects (filelock
    os.register_at_fork(after_in_child=_LOCKS.clear)  # refuses them): it makes its own on first use


class WorkspaceLock:
    """A context manager holding the lock of ``folder`` (the lock file is created on first use)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._key = os.path.abspath(self.folder / LOCK_FILE)

    def _lock(self) -> FileLock:
        with _GUARD:
            return _LOCKS.setdefault(self._key, FileLock(self._key, timeout=TIMEOUT_S))

    def __enter__(self) -> WorkspaceLock:
        check_folder(self.folder)  # filelock makes the folders of its file: never a moved workspace's
        try:
            self._lock().acquire()
        except TimeoutError as exc:
            raise LNQError(f"the workspace {self.folder} stayed locked for {TIMEOUT_S:.0f} s by another "
                           "program; close the other lnq-napari session, or wait and retry") from exc
        except OSError as exc:
            if exc.errno not in CANNOT_WRITE:
                raise
            raise lock_refused(self.folder, exc, "this command writes there") from exc
        return self

    def __exit__(self, *exc) -> None:
        self._lock().release()

    @contextlib.contextmanager
    def if_free(self) -> Iterator[bool]:
        """``with lock.if_free() as held:``: the lock taken when no other program or thread holds it
        (reentrant, as ``with lock``), never waited for; ``held`` says whether it was taken (never when
        the folder is gone or cannot be written)."""
        if not self.folder.is_dir():
            yield False
            return
        lock = self._lock()
        try:
            lock.acquire(timeout=0)
        except (TimeoutError, OSError):  # held by another, or a workspace that cannot be written
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


class NotWritable(LNQError):
    """A command that must write in a workspace that cannot be written (:func:`not_writable`); ``strerror``
    says why, as the operating system does."""

    def __init__(self, message: str, strerror: str | None = None) -> None:
        super().__init__(message)
        self.strerror = strerror


def not_writable(folder: Path, exc: OSError, why: str, part: Path | None = None) -> NotWritable:
    """The one error of a command that must write in the workspace ``folder`` when it cannot (``exc``):
    read-only, no permission, full disk; ``why`` says what the command stores there; ``part``: the folder of
    the workspace that cannot be written, when it is not the workspace's own."""
    read_only = exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    state = "is read-only" if read_only else "cannot be written to"
    where, it = (f"the workspace {folder}", "it") if part is None else (
        f"the folder {part} of the workspace {folder}", "the workspace")
    if is_full(exc):
        return NotWritable(full_line(exc, f"the workspace {folder}", "run the command again", f" and {why}"),
                           exc.strerror)
    return NotWritable(f"{where} {state} ({exc.strerror}) and {why}; make it writable, or copy {it} to a "
                       "folder you can write to and run the command there", exc.strerror)


def lock_refused(folder: Path, exc: OSError, why: str) -> NotWritable:
    """:func:`not_writable` for a lock of ``folder`` that could not be taken (``exc``), unless the folder
    can be written and only its lock file (``exc.filename``) cannot be opened for writing: one another
    account made (filelock makes it 0644 under a usual umask) or made immutable; then that, whose it is and
    what to do."""
    lock = exc.filename
    if (exc.errno not in (errno.EACCES, errno.EPERM) or not lock or not os.path.isfile(lock)
            or write_error(folder) is not None):
        return not_writable(folder, exc, why)
    quoted, owner = shlex.quote(str(lock)), _owner(lock)
    if owner is None or owner == _name(os.geteuid()):  # one's own: a chmod, or an immutable attribute
        whose, fix = "", f"make it writable (chmod u+w {quoted}; if it is immutable, chattr -i {quoted})"
    else:
        whose = f": it belongs to {owner}"
        fix = f"ask {owner}, whose lnq-napari made it, to run chmod a+w {quoted}"
    return NotWritable(f"the lock file {lock} of the workspace {folder} cannot be opened for writing "
                       f"({exc.strerror}), though the workspace can be written{whose}; {fix}, or delete it "
                       "while no lnq-napari uses the workspace, then run the command again", exc.strerror)


def _owner(path: str | Path) -> str | None:
    """The account that owns ``path`` (its name, else its uid), None where it cannot be told (Windows)."""
    if os.name == "nt":
        return None
    try:
        return _name(os.stat(path).st_uid)
    except OSError:
        return None


def _name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_folder(folder: Path) -> None:
    """LNQError when the workspace ``folder`` is not there (moved, renamed or deleted while open): taking
    its lock made the folder again at the old path, an empty shell a later move went into."""
    if not folder.is_dir():
        raise gone_error(folder)


RUN_FILE = ".finetune.lock"  # beside LOCK_FILE: held for as long as a fine-tune runs
#: What a fine-tune writes in its workspace, as the read-only message says it.
FINETUNE_WRITES = "a fine-tune keeps its plan and figures and registers its model there"
RUN_WAIT_S = 2.0  # a fine-tune starting waits this long for the run lock (a probe may hold it a moment)


class RunLock:
    """Held for the whole of one fine-tune in a workspace (ours or nnU-Net's): a second one, from any
    program or thread, is refused (after ``RUN_WAIT_S``) instead of discarding the first's plan and its
    scratch folders (two at once deleted the version the first had just registered and activated).
    Released by the operating system when the process dies, so an interrupted run can be resumed."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._lock: FileLock | None = None

    def __enter__(self) -> RunLock:
        from filelock import Timeout

        check_folder(self.folder)
        lock = FileLock(str(self.folder / RUN_FILE), timeout=RUN_WAIT_S, thread_local=False)
        try:
            lock.acquire()
        except Timeout as exc:
            raise LNQError(f"a fine-tune is already running in this workspace ({_holder(self.folder)}); wait "
                           "for it to finish or cancel it, then try again") from exc
        except OSError as exc:
            if exc.errno not in CANNOT_WRITE:
                raise
            raise lock_refused(self.folder, exc, FINETUNE_WRITES) from exc
        self._lock = lock
        try:  # who runs, for the refusal of a second one; the lock holds without it
            (self.folder / (RUN_FILE + ".json")).write_text(
                json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        except OSError:
            pass
        return self

    def __exit__(self, *exc) -> None:
        (self.folder / (RUN_FILE + ".json")).unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def finetune_running(folder: str | Path) -> bool | None:
    """Whether a fine-tune (of any program) holds the run lock of ``folder`` now: False when none does,
    None when it cannot be told (a lock file that cannot be opened, a file system without locks)."""
    return file_locked(os.path.join(folder, RUN_FILE))


def file_locked(path: str | Path) -> bool | None:
    """Whether a process (this one included, through another lock object) holds the ``filelock`` lock
    file ``path`` now: False when none does or there is no such file, None when it cannot be told (a
    lock file that cannot be opened, a file system without locks).

    filelock locks with ``fcntl.flock(LOCK_EX)`` on Unix: this asks for a shared lock on a read-only
    descriptor (so a read-only mount still tells), never waits, and holds it no longer than the call (a
    process taking the lock meanwhile waits for it a moment)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    if os.name == "nt":
        return _running_windows(path)
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return True if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
    finally:
        os.close(fd)  # the shared lock goes with it
    return False


def _running_windows(path: str) -> bool | None:
    """:func:`file_locked` on Windows (msvcrt locks): the lock taken and given back at once."""
    from filelock import Timeout

    lock = FileLock(path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:
        return None
    lock.release()
    return False


def _holder(folder: Path) -> str:
    """Who holds the run lock, in words, as far as its note says."""
    try:
        note = json.loads((folder / (RUN_FILE + ".json")).read_text())
        return f"process {note['pid']}, since {note['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another program"
