"""Crash autosave files: where they go and the atomic rewrite of ``<case>.session-<id>.autosave.seg.nrrd``.

One rolling file per case and viewer session (:class:`AutosaveSession`), rewritten after edits (the
plugin's timers decide when); it is not a label version. The session holds a lock file beside it while it
lives (released by the operating system when its process dies): a case open in two windows has two
autosaves, neither writes over the other's, and one whose session still lives is never offered as a
crash's leftovers (:func:`live_autosaves`). Files named ``<case>.autosave.seg.nrrd`` (written before
autosaves were per session) are found and offered as before.

The folder: $LNQ_NAPARI_AUTOSAVE_DIR, else ``<workspace>/autosave``, else ``lnq-autosave/``
beside the source file when writable, else ``~/.cache/lnq-napari/autosave``. A workspace moved, renamed or
deleted while a case is open gets no autosave at its old path (that made its folders again there, an empty
shell): the edits go where a case opened without one keeps them, marked with the workspace's identity
(:func:`lnq_napari.workspace.cases.workspace_id`) so that the case opened from that workspace, wherever
it is then, offers them again, and no other workspace does.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lnq_napari.io.layout import AUTOSAVE_SUFFIX, SESSION_TAIL
from lnq_napari.io.nrrd_header import custom_fields
from lnq_napari.io.segfile import write_seg_nrrd
from lnq_napari.io.volume import Volume
from lnq_napari.workspace.cases import workspace_gone, written_for
from lnq_napari.workspace.files import now
from lnq_napari.workspace.lock import file_locked

AUTOSAVE_ENV = "LNQ_NAPARI_AUTOSAVE_DIR"
WORKSPACE_AUTOSAVE = "autosave"  # the autosave folder inside a workspace
REVIEW_FIELDS = ("marked", "rejected")  # provenance lists an autosave keeps as JSON in lnq_<name> fields
MOVED_FIELD = "lnq_workspace_moved"  # "1": written outside the workspace (gone from its path, or read-only)
ID_FIELD = "lnq_workspace_id"  # the identity of the workspace the case was opened from (cases.workspace_id)
SESSION_FIELD = "lnq_session"  # the viewer session that writes the file (AutosaveSession.id)
OWNER_FIELDS = ("lnq_owner_user", "lnq_owner_host", "lnq_owner_pid")  # who writes it, where, which process
LOCK_SUFFIX = ".lock"  # the session's lock file: <autosave file>.lock
_SESSION_NAME = re.compile(SESSION_TAIL + re.escape(AUTOSAVE_SUFFIX))


def autosave_dir(source: str | Path | None = None, workspace: str | Path | None = None) -> Path:
    """The autosave folder for a case read from ``source`` (and opened from ``workspace``); in a folder
    others may share (a workspace's, one beside the source) a subfolder per user, so that two reviewers
    of one case do not write over each other's unsaved edits."""
    if os.environ.get(AUTOSAVE_ENV):
        return Path(os.environ[AUTOSAVE_ENV])
    shared = _shared_dir(source, workspace)
    return shared / user_folder() if shared else Path.home() / ".cache" / "lnq-napari" / "autosave"


@dataclass(frozen=True)
class AutosaveTarget:
    """Where the autosave of a case open from a workspace goes now, decided once per write."""

    folder: Path
    workspace: str  # the workspace's absolute path when opened ("" without one)
    workspace_id: str  # its identity ("" when unknown)
    moved: bool  # gone from that path (cases.workspace_gone): ``folder`` is outside it
    read_only: bool = False  # its autosave folder cannot be written (read-only mount): ``folder`` is outside

    def fields(self) -> dict[str, str]:
        """The header fields that name the workspace (one $LNQ_NAPARI_AUTOSAVE_DIR serves them all)."""
        aside = "1" if self.moved or self.read_only else ""
        return {"lnq_workspace": self.workspace, ID_FIELD: self.workspace_id, MOVED_FIELD: aside}


def autosave_target(source: str | Path | None, workspace: str | Path | None,
                    workspace_id: str | None = None) -> AutosaveTarget:
    """Where the autosave of a case read from ``source`` and open from ``workspace`` (identity
    ``workspace_id``) goes now: :func:`autosave_dir`'s folder, or, once the workspace is gone from that
    path (:func:`~lnq_napari.workspace.cases.workspace_gone`), that of a case opened without one (never
    the old path: writing there made the workspace's folders again, an empty shell, or wrote into another
    workspace made there). A workspace whose autosave folder cannot be written (a read-only mount) has its
    autosaves there too: they failed at every edit."""
    moved = workspace_gone(workspace, workspace_id)
    folder = autosave_dir(source, None if moved else workspace)
    read_only = bool(workspace) and not moved and not os.environ.get(AUTOSAVE_ENV) and not _writable(
        [folder, folder.parent, Path(workspace)])
    return AutosaveTarget(autosave_dir(source, None) if read_only else folder, os.path.abspath(workspace)
                          if workspace else "", workspace_id or "", moved, read_only)


def _writable(folders: list[Path]) -> bool:
    """Whether the first of ``folders`` that exists can be written (True when none can be told: a write
    there then fails and says why)."""
    found = next((f for f in folders if os.path.isdir(f)), None)
    return found is None or os.access(found, os.W_OK)


def _shared_dir(source: str | Path | None, workspace: str | Path | None) -> Path | None:
    """The autosave folder several users may share (a workspace's, else one beside a writable source),
    None when there is none (no $LNQ_NAPARI_AUTOSAVE_DIR checked here)."""
    if workspace:
        return Path(workspace) / WORKSPACE_AUTOSAVE
    if source and Path(source).parent.is_dir() and os.access(Path(source).parent, os.W_OK):
        return Path(source).parent / "lnq-autosave"
    return None


def moved_note(workspace: str | Path, case: str, folder: str | Path) -> str:
    """The one line that tells where the unsaved edits of ``case`` are autosaved, and why, once its
    workspace is gone from where it was opened."""
    return (f"the workspace {workspace} is gone from there (moved, renamed or deleted while open, or another "
            f"workspace made there?): the unsaved edits of {case} are autosaved in {folder} instead; open "
            "the workspace where it is now and open the case again to get them back")


def read_only_note(workspace: str | Path, case: str, folder: str | Path) -> str:
    """The one line that tells where the unsaved edits of ``case`` are autosaved when its workspace cannot
    be written, and that only that workspace gets them back (a copy of it does not while it is there:
    :func:`~lnq_napari.workspace.cases.written_for`)."""
    return (f"the workspace {workspace} cannot be written (read-only?): the unsaved edits of {case} are "
            f"autosaved in {folder} instead, and offered again when the case opens from this workspace "
            "(not from a copy of it: open the case here to get them back)")


def user_folder() -> str:
    """The user's login name as a folder name (``user`` when the system has none for this process)."""
    import getpass

    try:
        name = getpass.getuser()
    except (KeyError, OSError, ImportError):  # a container's uid without a passwd entry
        name = ""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "user"


def autosave_path(folder: str | Path, case: str, session: str = "") -> Path:
    """``<folder>/<case>.session-<session>.autosave.seg.nrrd``; ``<folder>/<case>.autosave.seg.nrrd``
    (the name before autosaves were per session) without ``session``."""
    name = f"{case}.session-{session}" if session else case
    return Path(folder) / f"{name}{AUTOSAVE_SUFFIX}"


def case_autosaves(folder: str | Path, case: str) -> list[Path]:
    """Every autosave file of ``case`` in ``folder``: each session's, and one of the name before."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [Path(folder) / n for n in sorted(names) if n == f"{case}{AUTOSAVE_SUFFIX}"
            or (n.startswith(f"{case}.session-") and _SESSION_NAME.fullmatch(n[len(case):]))]


def _case_candidates(case: str, source: str | Path | None, workspace: str | Path | None,
                     workspace_id: str | None) -> list[Path]:
    """The autosave files of ``case`` (read from ``source``, opened from ``workspace``) that may hold its
    unsaved edits: the user's folder's, the shared folder's (written before autosaves were per user) and
    those kept aside while the workspace was gone."""
    folder = autosave_dir(source, workspace)
    shared = None if os.environ.get(AUTOSAVE_ENV) else _shared_dir(source, workspace)
    found = case_autosaves(folder, case)
    if shared is not None and shared != folder:
        found += [p for p in case_autosaves(shared, case) if p.is_file()]
    return [p for p in dict.fromkeys([*found, *_kept_aside(case, source, workspace, workspace_id)])
            if p.is_file()]


def ended_autosaves(case: str, source: str | Path | None, workspace: str | Path | None,
                    workspace_id: str | None = None, own: tuple[str, ...] = ()) -> list[Path]:
    """Every autosave file of ``case`` (read from ``source``, opened from ``workspace`` of identity
    ``workspace_id``) whose session is over (a crash, a closed window, or one of the sessions ``own``, the
    asking window's), newest first. One a live session of another window or process writes is never one
    (:func:`live_autosaves`)."""
    found = [p for p in _case_candidates(case, source, workspace, workspace_id)
             if session_owner(p, own) is None]
    return sorted(found, key=_mtime, reverse=True)


def newer_autosave(case: str, source: str | Path | None, workspace: str | Path | None,
                   than: str | Path | None, workspace_id: str | None = None,
                   own: tuple[str, ...] = ()) -> Path | None:
    """The newest of :func:`ended_autosaves` when it was written after the label file ``than`` (any when
    ``than`` is None): unsaved edits left behind. None when there is none or it is older."""
    found = ended_autosaves(case, source, workspace, workspace_id, own)
    try:
        return found[0] if found and (than is None or _mtime(found[0]) > Path(than).stat().st_mtime_ns) \
            else None
    except OSError:
        return None


def remove_ended(path: str | Path) -> bool:
    """Remove the autosave ``path`` of a session that is over and its lock file, under that lock taken
    at once (a session that holds it keeps both); False when they are not removed (held, no locks on
    this file system, or the unlink failed: a leftover is harmless)."""
    from filelock import FileLock, Timeout

    path = Path(path)
    lock = FileLock(f"{path}{LOCK_SUFFIX}", timeout=0, thread_local=False)
    try:
        lock.acquire()
    except (Timeout, OSError, NotImplementedError):
        return False
    try:
        path.unlink(missing_ok=True)
        Path(f"{path}{LOCK_SUFFIX}").unlink(missing_ok=True)
        return True
    except OSError:
        return False
    finally:
        try:
            lock.release()
        except (OSError, NotImplementedError):
            pass


def stray_locks(case: str, source: str | Path | None, workspace: str | Path | None) -> list[Path]:
    """The autosave paths of ``case`` whose lock file is there without the autosave (a write that failed,
    a removal cut short): :func:`remove_ended` cleans them."""
    folders = {autosave_dir(source, workspace)}
    shared = None if os.environ.get(AUTOSAVE_ENV) else _shared_dir(source, workspace)
    folders |= {shared} if shared is not None else set()
    found = []
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        autosaves = [n[: -len(LOCK_SUFFIX)] for n in sorted(names) if n.endswith(LOCK_SUFFIX)]
        found += [Path(folder) / n for n in autosaves if n.startswith(f"{case}.session-")
                  and _SESSION_NAME.fullmatch(n[len(case):]) and not (Path(folder) / n).exists()]
    return found


def live_autosaves(case: str, source: str | Path | None, workspace: str | Path | None,
                   workspace_id: str | None = None, own: tuple[str, ...] = ()) -> list[tuple[Path, str]]:
    """The autosave files of ``case`` that a live session of another window or process (not one of the
    sessions ``own``) writes, each with who writes it, in words (:func:`session_owner`), newest first."""
    found = [(p, who) for p in _case_candidates(case, source, workspace, workspace_id)
             if (who := session_owner(p, own)) is not None]
    return sorted(found, key=lambda f: _mtime(f[0]), reverse=True)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def session_owner(path: str | Path, own: tuple[str, ...] = ()) -> str | None:
    """Who writes the autosave ``path`` now, in words (``user on host, process N``), when its session
    lives (its lock file is held), and is not one of the sessions ``own``; None when it is over (a crash,
    a closed window), or the file has no session (one of the name before). Where locks cannot be told (a
    file system without them) a session of this machine lives while its process does; one of another
    machine is taken as over (its edits offered: never lost)."""
    match = _SESSION_NAME.search(Path(path).name)
    if match is None or match.group(0)[len(".session-"):-len(AUTOSAVE_SUFFIX)] in own:
        return None
    held = file_locked(f"{path}{LOCK_SUFFIX}")
    if held is False:
        return None
    fields = autosave_fields(path)
    user, host, pid = (fields.get(k, "") for k in OWNER_FIELDS)
    if held is None and not (host == socket.gethostname() and pid.isdigit() and _alive(int(pid))):
        return None
    who = f"{user or 'another user'} on {host or 'another machine'}"
    return f"{who}, process {pid}" if pid else who


def _alive(pid: int) -> bool:
    """Whether the process ``pid`` of this machine runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: it runs
        return True
    return True


def open_elsewhere_note(case: str, path: str | Path, who: str) -> str:
    """The one line that tells that ``case`` is open with unsaved edits in another window or process
    (``who``, autosaving to ``path``): not offered here, as a crash's would be."""
    return (f"{case} is open with unsaved edits in another window or process ({who}; autosaved in {path}): "
            "they are not shown here; Save them there first, or close that window, then open the case again")


class AutosaveSession:
    """The autosave files of one viewer session: each written with the session's id, who writes it and
    where in its header, and the session's lock file held beside it until :meth:`close` (or the process
    ends). Qt-free: the plugin's timers call :meth:`write` from a worker thread."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:12]
        self._locks: dict[Path, object] = {}  # autosave file -> its held FileLock
        self._told_unlocked = False  # said once that a lock could not be taken (written without it)
        self._written: list[Path] = []  # the autosave files this session wrote (with a lock or without)

    def owner_fields(self) -> dict[str, str]:
        """The header fields naming the session, its user, machine and process."""
        return {SESSION_FIELD: self.id, **dict(zip(OWNER_FIELDS, (user_folder(), socket.gethostname(),
                                                                  str(os.getpid()))))}

    def path(self, folder: str | Path, case: str) -> Path:
        """The session's autosave file of ``case`` in ``folder``."""
        return autosave_path(folder, case, self.id)

    def write(self, labels: Volume, folder: str | Path, case: str, extra: dict | None = None,
              writer: Callable[..., Path] | None = None) -> Path:
        """Atomically (re)write the session's autosave of ``case`` in ``folder`` (with ``writer``, default
        :func:`write_autosave`), its lock held first."""
        path = self.path(folder, case)
        self._hold(path)
        if path not in self._written:
            self._written.append(path)
        fields = {**(extra or {}), **self.owner_fields()}
        return (writer or write_autosave)(labels, folder, case, fields, session=self.id)

    def _hold(self, path: Path) -> None:
        from filelock import FileLock, Timeout

        if path in self._locks:
            return
        lock = FileLock(f"{path}{LOCK_SUFFIX}", timeout=0, thread_local=False)
        try:
            os.makedirs(path.parent, exist_ok=True)
            lock.acquire()
        except Timeout:  # never (the id is this session's): the file is still written
            return
        except (OSError, NotImplementedError) as exc:  # a file system without flock (filelock 3.x raises
            self._unlocked(path, exc)  # NotImplementedError there): written without the lock, never lost;
            return  # the header's process tells whether the session lives
        self._locks[path] = lock

    def _unlocked(self, path: Path, exc: BaseException) -> None:
        """Say once per session that its autosave is written without a lock (it is still written)."""
        if self._told_unlocked:
            return
        self._told_unlocked = True
        warnings.warn(f"lnq-napari autosave of {path.name} is written without a lock ({type(exc).__name__}: "
                      f"{exc}): the file system may not support locks; another window may take it for a "
                      "crash's while this one is open", RuntimeWarning, stacklevel=3)

    def close(self, remove: bool) -> str:
        """The session ends: its locks are given back, and with ``remove`` (nothing unsaved: all it holds
        was saved) its autosave files and lock files go. Never raises: returns one line saying what could
        not be removed or released ("" when all went; a file left is offered as a crash's, never lost)."""
        failed: list[str] = []
        for path in list(dict.fromkeys([*self._written, *self._locks])):
            lock = self._locks.pop(path, None)
            try:
                if remove:
                    path.unlink(missing_ok=True)
            except OSError as exc:
                failed.append(f"{path} ({exc.strerror or exc})")
                remove_lock = False
            else:
                remove_lock = remove
            finally:
                if lock is not None:
                    try:
                        lock.release()
                    except (OSError, NotImplementedError) as exc:
                        failed.append(f"the lock of {path} ({exc})")
            if remove_lock:
                try:
                    Path(f"{path}{LOCK_SUFFIX}").unlink(missing_ok=True)
                except OSError as exc:
                    failed.append(f"{path}{LOCK_SUFFIX} ({exc.strerror or exc})")
        self._locks.clear()
        self._written.clear()
        if not failed:
            return ""
        return (f"lnq-napari could not remove or release the autosave of a closed case: {'; '.join(failed)}; "
                "delete it by hand once its edits are saved")


def _kept_aside(case: str, source: str | Path | None, workspace: str | Path | None,
                workspace_id: str | None) -> list[Path]:
    """The autosaves of ``case`` the workspace (``workspace``, identity ``workspace_id``) wrote outside
    itself while it was gone from the path it was opened from (:class:`AutosaveTarget`)."""
    if not workspace:
        return []
    folders = {autosave_dir(source, None), Path.home() / ".cache" / "lnq-napari" / "autosave"}
    return [p for f in folders for p in case_autosaves(f, case) if p.is_file()
            and (fields := autosave_fields(p)).get(MOVED_FIELD) == "1"
            and _written_for(fields, workspace, workspace_id)]


def _written_for(fields: Mapping[str, str], workspace: str | Path, workspace_id: str | None) -> bool:
    """Whether an autosave's header names the workspace at ``workspace`` (identity ``workspace_id``), or
    none: by identity where it has one (:func:`~lnq_napari.workspace.cases.written_for`: not a copy's
    whose original is still where it was); one written before the identity field by the path."""
    theirs, theirs_id = fields.get("lnq_workspace"), fields.get(ID_FIELD)
    if theirs_id and workspace_id:
        return written_for(theirs, theirs_id, workspace, workspace_id)
    return not theirs or Path(theirs).resolve() == Path(workspace).resolve()


def autosave_fields(path: str | Path) -> dict[str, str]:
    """An autosave's own header fields (``lnq_parent``, ``lnq_workspace``, ...); empty when the file
    cannot be read."""
    import nrrd

    try:
        return custom_fields(nrrd.read_header(str(path)))
    except (OSError, nrrd.NRRDError):
        return {}


def autosave_parent(path: str | Path) -> str | None:
    """The workspace label version an autosave's edits were made on (its ``lnq_parent`` field; None when
    it has none, as autosaves older than the field, or the file cannot be read)."""
    return autosave_fields(path).get("lnq_parent") or None


def autosave_of_another_workspace(path: str | Path, workspace: str | Path,
                                  workspace_id: str | None = None) -> bool:
    """Whether an autosave was written for a case of another workspace than the one at ``workspace``
    (identity ``workspace_id``): one $LNQ_NAPARI_AUTOSAVE_DIR serves them all and case names repeat across
    workspaces. One in the workspace's own autosave folder is its own, wherever the workspace was when it
    was written (moved, renamed, opened by a relative path from another folder: its edits were taken for
    another workspace's and overwritten); one elsewhere is when its header names this workspace
    (:func:`_written_for`)."""
    if Path(path).resolve().is_relative_to((Path(workspace) / WORKSPACE_AUTOSAVE).resolve()):
        return False
    return not _written_for(autosave_fields(path), workspace, workspace_id)


def review_fields(marked: list[dict], rejected: list[dict]) -> dict[str, str]:
    """The header fields that keep a case's marks and rejected suggestions in its autosave."""
    return {f"lnq_{name}": json.dumps(value) for name, value in zip(REVIEW_FIELDS, (marked, rejected))}


def read_review_fields(header: Mapping[str, str]) -> dict[str, list]:
    """``{"marked": [...], "rejected": [...]}`` from an autosave's header fields (empty lists when it
    has none, as those older than the fields)."""
    out = {}
    for name in REVIEW_FIELDS:
        try:
            value = json.loads(header.get(f"lnq_{name}", "[]"))
        except ValueError:
            value = []
        out[name] = value if isinstance(value, list) else []
    return out


def write_autosave(labels: Volume, folder: str | Path, case: str, extra: dict | None = None,
                   session: str = "") -> Path:
    """Atomically (re)write the autosave file of ``case`` (of the viewer session ``session``) in
    ``folder``; returns its path."""
    fields = {"lnq_autosave_time": now(), **{k: str(v) for k, v in (extra or {}).items()}}
    return write_seg_nrrd(autosave_path(folder, case, session), labels, extra=fields)
