"""Atomic file writes: a temp file in the target folder, then ``os.replace`` (or :func:`place_new`, which
never replaces).

A write killed before its rename leaves its temp file (``.<name>.<8 random characters>.tmp<suffix>``):
hidden, never named like a real file, so never read as data. Each later write into the same folder
removes such leftovers once they are :data:`STALE_SECONDS` old (a temp file still being written is
younger: its modification time moves with every write).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lnq_napari.errors import LNQError

#: A temp file of an interrupted write this old (seconds since its last change) is removed.
STALE_SECONDS = 3600.0
#: The errors of a place one cannot write to (permissions, a read-only file system, a full disk or quota, a
#: file where a folder must be, a name longer than the file system allows, a file larger than it or a limit
#: allows): the one set the command line and the workspace's locks judge an OSError by.
CANNOT_WRITE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                          errno.ENAMETOOLONG, errno.EFBIG})
#: The errors of a full disk or quota (among :data:`CANNOT_WRITE`): freeing space is what helps.
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: The names :func:`atomic_write` gives its temp files (``tempfile.mkstemp``'s 8 random characters).
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp")


@contextlib.contextmanager
def atomic_write(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    ``suffix`` keeps the extension writers look at (e.g. ``".seg.nrrd"``); by default the target's
    full suffix is used.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = temp_beside(path, suffix)
    try:
        yield tmp_path
        flushed(tmp_path)
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        # an error naming no file (a write, a flush) or only the hidden temp one: it names the target instead
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, str(tmp_path)):
            raise with_target_name(exc, path) from exc
        raise
    remove_stale_temps(path.parent)


def with_target_name(exc: OSError, path: str | Path) -> OSError:
    """``exc`` (same type and errno) naming ``path``: ``write()`` on a full disk says only "No space left on
    device", and the one-line error the user reads must say where."""
    return type(exc)(exc.errno, exc.strerror, str(path))


def is_full(exc: BaseException) -> bool:
    """True for the error of a full disk or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in FULL


def space_advice(exc: OSError, there: str = "there") -> str:
    """What helps a full disk or quota (``exc``, an errno of :data:`FULL`): free space ``there``, or, for a
    used-up quota, remove one's own files or ask for a larger quota."""
    if exc.errno == errno.EDQUOT:
        return "remove files of yours or ask for a larger quota"
    return f"free space {there}"


def full_line(exc: OSError, where: str | None, then: str, why: str = "") -> str:
    """The one line for a full disk or used-up quota (``exc``) at ``where`` (e.g. "the workspace X"; None:
    not known): what is full, ``why`` it matters (appended as is), what helps, then ``then``."""
    on = f" on {where}" if where else ""
    what = f"your disk quota{on} is used up" if exc.errno == errno.EDQUOT else (
        f"the disk of {where} is full" if where else "the disk is full")
    return f"{what} ({exc.strerror}){why}; {space_advice(exc, 'there' if where else 'on it')}, then {then}"


def cannot_write_line(exc: OSError, then: str = "run the command again") -> str:
    """The one line for a write refused by the system (``exc``, an errno of :data:`CANNOT_WRITE`): the
    folder, why, and what to do (free space on a full disk or quota, else a writable folder), ``then`` what.
    A full disk is said of the nearest folder that is still there when the line is made (a staging folder
    of the write is removed by then)."""
    where = Path(exc.filename) if exc.filename else None
    if is_full(exc):
        folder = next((p for p in where.parents if p.is_dir()), where.parent) if where else None
        writing = f" while writing {where.name}" if where else ""
        return full_line(exc, str(folder) if folder else None, then, writing)
    return (f"cannot write {where or 'a file'} ({exc.strerror}); give a writable folder (a short name, no "
            f"file in its path), then {then}")


def flushed(path: str | Path) -> os.stat_result:
    """Flush the written file ``path`` to disk; its status."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
        return os.fstat(handle.fileno())


def temp_beside(path: str | Path, suffix: str | None = None) -> Path:
    """A new empty temp file in ``path``'s folder, named as :func:`atomic_write` names its own (so a
    killed writer's is cleaned the same way), with the mode a plain ``open()`` gives. Makes no folder:
    FileNotFoundError when the folder is not there (moved away: never an empty shell at the old path)."""
    path = Path(path)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode a plain open() would
    return Path(tmp)


def place_new(tmp: str | Path, path: str | Path) -> None:
    """Move the written file ``tmp`` to ``path`` in the same folder, never replacing: FileExistsError when
    ``path`` exists (``tmp`` then stays), FileNotFoundError when ``tmp`` is not there. A hard link, then
    ``tmp`` unlinked (a failure to unlink it is left to :func:`remove_stale_temps`: the file is in place);
    where the file system has no hard links (FAT and exFAT drives, some network shares: each says so with
    another error), a rename (it refuses an existing target on Windows; elsewhere the target is checked
    first). The folder's entry is flushed to disk before it returns (POSIX)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        if not _same_file(tmp, path):  # an NFS link retried by the client finds its own first try
            raise
    except FileNotFoundError:
        raise
    except OSError:
        if os.name != "nt" and os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.rename(tmp, path)
        _sync_folder(Path(path).parent)
        return
    with contextlib.suppress(OSError):  # a virus scanner holding it open, say
        os.unlink(tmp)
    _sync_folder(Path(path).parent)


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _sync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries to disk where the system can (a new name is durable before what points
    at it is written); nothing on Windows, which opens no folder."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def staging_folder(parent: str | Path, prefix: str) -> Path:
    """A new folder in ``parent`` named ``<prefix><8 random characters>``, with the mode a plain ``mkdir``
    gives (``tempfile.mkdtemp`` makes 0700: renamed into place as a workspace or a model version, it kept
    every other user out, a second reviewer too)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    setgid = os.stat(folder).st_mode & 0o7000  # a shared group folder's setgid bit, as mkdir keeps it
    os.chmod(folder, (0o777 & ~_umask()) | setgid)
    return folder


def write_error(folder: str | Path) -> OSError | None:
    """Why nothing can be written in ``folder`` (read-only, no permission, full), found by making and
    removing a temp file there (a killed check, or one that could not remove its file, leaves one
    :func:`remove_stale_temps` takes), or None."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
    except OSError as exc:
        return exc
    os.close(fd)
    with contextlib.suppress(OSError):  # held open a moment (a Windows virus scanner): swept as a temp later
        os.unlink(tmp)
    return None


def access_error(folder: str | Path) -> OSError | None:
    """Why nothing could be written in ``folder`` (a read-only file system, no write permission), asked of
    the system without writing anything (a dry run's :func:`write_error`), or None."""
    folder = str(folder)
    if os.access(folder, os.W_OK):
        return None
    code = errno.EACCES
    with contextlib.suppress(OSError, AttributeError):  # statvfs: not on Windows
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            code = errno.EROFS
    return OSError(code, os.strerror(code), folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_temp(path: str | Path) -> bool:
    """True for a temp file name of :func:`atomic_write` (a write in progress or a leftover)."""
    return bool(TEMP_NAME.match(Path(path).name))


def remove_stale_temps(folder: str | Path, older_than: float = STALE_SECONDS,
                       pattern: re.Pattern = TEMP_NAME) -> int:
    """Remove the temp files of interrupted writes in ``folder`` (names matching ``pattern``; a matching
    folder, such as a staging copy, goes with its content) not changed for ``older_than`` seconds;
    returns how many. Entries that vanish or cannot be removed meanwhile are left alone."""
    limit = time.time() - older_than
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= limit:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            elif entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
            else:
                continue
            removed += 1
        except OSError:
            continue
    return removed


def check_output_folder(path: str | Path, flag: str, what: str, probe: bool = True) -> Path:
    """``path`` as a folder outputs go to (made later, by the writers); LNQError in one line when a file
    is in the way, the path is empty (it read as the current folder) or, with ``probe``, the folder (or
    the nearest one above it that exists) cannot be written, before anything is computed or written."""
    if not str(path).strip():
        raise LNQError(f"{flag} is empty; give a folder for {what}")
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise LNQError(f"{flag} {path} is a file; give a folder for {what}")
    blocker = file_above(path)
    if blocker is not None:
        raise LNQError(f"{flag} {path} lies under {blocker}, which is a file; give a folder for {what}")
    if probe:
        check_folder_writable(path, flag, what)
    return path


def check_folder_writable(folder: Path, flag: str, what: str, shown: Path | None = None) -> None:
    """LNQError in one line when nothing can be written in ``folder`` or, where it is still to make, the
    nearest existing folder above it (where the first write goes); ``shown`` is the path the user gave."""
    where = next((p for p in (folder, *folder.parents) if p.is_dir()), None)
    why = None if where is None else write_error(where)
    if why is not None:  # before a long run that would end at its first write
        reason = why.strerror or why
        raise LNQError(f"{flag} {shown or folder}: nothing can be written in {where} ({reason}); give a "
                       f"writable folder for {what}")


def file_above(path: str | Path) -> Path | None:
    """The nearest existing folder-to-be above ``path`` that is a file (nothing can be made under it), or
    None."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
