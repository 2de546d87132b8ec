"""Where corrected labels go: new label versions beside the case, and crash autosaves. No Qt here.

This is the one seam between the widgets and storage: route :func:`save_label_version` to a
:class:`lnq_napari.workspace.Workspace` by passing ``workspace``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from pathlib import Path

from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.io.volume import Volume

AUTOSAVE_ENV = "LNQ_NAPARI_AUTOSAVE_DIR"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def next_version_path(folder: Path, case: str) -> Path:
    """``<folder>/<case>-seg.vNNN.seg.nrrd`` with NNN one above every existing version."""
    pattern = re.compile(re.escape(case) + r"-seg\.v(\d{3,})\.seg\.nrrd$")
    numbers = [
        int(m.group(1)) for p in folder.glob(f"{case}-seg.v*.seg.nrrd") if (m := pattern.match(p.name))
    ]
    return folder / f"{case}-seg.v{max(numbers, default=0) + 1:03d}.seg.nrrd"


def save_label_version(
    labels: Volume,
    folder: str | Path,
    case: str,
    provenance: dict,
    workspace=None,
) -> Path:
    """Write ``labels`` as a new version (never overwriting) with provenance in the header and a sidecar.

    Returns the label file. The JSON sidecar (same name, ``.json``) holds ``provenance`` plus the time.
    With ``workspace`` (a :class:`lnq_napari.workspace.Workspace`), the version is stored there instead.
    """
    from lnq_napari.io.segfile import write_seg_nrrd

    prov = {"case": case, "time": _now(), **provenance}
    if workspace is not None:
        version = workspace.add_label_version(
            case,
            labels,
            source="correction",
            model_version=prov.get("model_version"),
            edits=int(prov.get("edits", 0)),
            origin=prov.get("source"),
        )
        return Path(workspace.root) / "labels" / case / f"{version}.seg.nrrd"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = next_version_path(folder, case)
    extra = {f"lnq_{k}": str(v).replace("\n", " ") for k, v in prov.items() if v is not None}
    write_seg_nrrd(path, labels, extra=extra)
    prov["file"] = path.name
    atomic_write_text(path.with_name(path.name[: -len(".seg.nrrd")] + ".json"), json.dumps(prov, indent=1))
    return path


def autosave_dir(source: str | Path | None = None, workspace: str | Path | None = None) -> Path:
    """The autosave folder: $LNQ_NAPARI_AUTOSAVE_DIR, else <workspace>/autosave, else beside the source
    file (``lnq-autosave/``) when writable, else ``~/.cache/lnq-napari/autosave``."""
    if os.environ.get(AUTOSAVE_ENV):
        return Path(os.environ[AUTOSAVE_ENV])
    if workspace:
        return Path(workspace) / "autosave"
    if source and Path(source).parent.is_dir() and os.access(Path(source).parent, os.W_OK):
        return Path(source).parent / "lnq-autosave"
    return Path.home() / ".cache" / "lnq-napari" / "autosave"


def write_autosave(labels: Volume, folder: str | Path, case: str, extra: dict | None = None) -> Path:
    """Atomically (re)write ``<folder>/<case>.autosave.seg.nrrd``; returns its path."""
    from lnq_napari.io.segfile import write_seg_nrrd

    path = Path(folder) / f"{case}.autosave.seg.nrrd"
    fields = {"lnq_autosave_time": _now(), **{k: str(v) for k, v in (extra or {}).items()}}
    return write_seg_nrrd(path, labels, extra=fields)
