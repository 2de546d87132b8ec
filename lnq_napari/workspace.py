"""A review workspace: cases, versioned labels with provenance, an action journal and model versions.

Layout of a workspace folder ``W``::

    W/workspace.json                 cases: id -> ct, seg (original partial labels), full (phantom truth)
    W/labels/<case>/vNNN.seg.nrrd    one file per label version (never overwritten)
    W/labels/<case>/vNNN.json        its provenance; a label file without one is ignored (crash leftover)
    W/journal.jsonl                  append-only, one JSON object per action
    W/models/registry.json           model versions (id, path, parent, training cases, metrics, active)
    W/models/<version>/              weights.safetensors + config.json
    W/cache/                         derived data (review scores per model version); safe to delete

Crash safety: every file is written to a temp file and renamed. A label version is committed by its
provenance file, which is written after the label file and before the journal line, so a process killed
at any moment loses at most the version in flight. The journal tolerates a torn last line.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.io.volume import Volume

FORMAT = "lnq-napari-workspace"
FORMAT_VERSION = 1
SOURCES = ("original", "prediction", "correction", "autosave")
_VERSION_RE = re.compile(r"^v(\d{3,})\.json$")
_LABEL_SUFFIX = ".seg.nrrd"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def case_id_from_ct(path: Path) -> str:
    """``lnq2023-train-0001-ct.nrrd`` -> ``lnq2023-train-0001``."""
    return path.name[: -len("-ct.nrrd")]


def scan_data(data: str | Path) -> dict[str, dict[str, str | None]]:
    """Pair ``*-ct.nrrd`` with ``-seg.nrrd`` / ``-full.nrrd`` / ``-nodes.json`` in a data folder."""
    data = Path(data)
    if not data.is_dir():
        raise LNQError(f"data folder {data} does not exist; give a folder of lnq2023-*-ct.nrrd files")
    cases: dict[str, dict[str, str | None]] = {}
    for ct in sorted(data.glob("*-ct.nrrd")):
        case = case_id_from_ct(ct)

        def sibling(suffix: str, case: str = case) -> str | None:
            p = data / f"{case}-{suffix}"
            return str(p.resolve()) if p.exists() else None

        cases[case] = {
            "ct": str(ct.resolve()),
            "seg": sibling("seg.nrrd"),
            "full": sibling("full.nrrd"),
            "nodes": sibling("nodes.json"),
        }
    if not cases:
        raise LNQError(f"no *-ct.nrrd files in {data}; point --data at a folder of LNQ-layout cases")
    return cases


def _write_labels(path: Path, labels: Volume, extra: dict) -> None:
    """Write a node mask (non-zero -> 1) as a 3D Slicer ``.seg.nrrd``; the writer is atomic."""
    from lnq_napari.io.segfile import write_seg_nrrd

    write_seg_nrrd(path, labels, name="lymph node", extra={k: str(v) for k, v in extra.items()})


class Workspace:
    """A workspace folder. Create with :meth:`init`, open with :meth:`open`."""

    def __init__(self, root: Path, meta: dict) -> None:
        self.root = Path(root)
        self.meta = meta
        self._lock = threading.RLock()

    # ------------------------------------------------------------ create / open
    @classmethod
    def open(cls, path: str | Path) -> Workspace:
        """Open an existing workspace; LNQError when ``path`` is not one."""
        root = Path(path)
        meta_path = root / "workspace.json"
        if not meta_path.is_file():
            raise LNQError(
                f"{root} is not a lnq-napari workspace (no workspace.json); "
                "create one with `lnq-napari workspace init PATH --data DIR`"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise LNQError(f"{meta_path} is unreadable ({exc}); restore it from a backup") from exc
        if meta.get("format") != FORMAT:
            raise LNQError(f"{meta_path} is not a lnq-napari workspace file; choose another folder")
        return cls(root, meta)

    @classmethod
    def init(
        cls, path: str | Path, data: str | Path, progress: Callable[[float, str], None] | None = None
    ) -> Workspace:
        """Create a workspace over ``data``; original partial labels become version v001 of each case.

        Built in a hidden sibling folder and renamed into place, so a crash leaves nothing half made.
        """
        root = Path(path)
        if (root / "workspace.json").exists():
            raise LNQError(f"workspace {root} already exists; open it, or choose a new folder")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise LNQError(f"{root} exists and is not empty; choose a new folder for the workspace")
        cases = scan_data(data)
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=root.parent))
        try:
            meta = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "created": _now(),
                "data": str(Path(data).resolve()), "cases": cases,
            }
            atomic_write_text(staging / "workspace.json", json.dumps(meta, indent=1))
            ws = cls(staging, meta)
            (staging / "models").mkdir()
            atomic_write_text(staging / "models" / "registry.json", json.dumps({"versions": []}, indent=1))
            with_seg = [c for c, e in cases.items() if e["seg"]]
            for i, case in enumerate(with_seg):
                if progress:
                    progress(i / max(len(with_seg), 1), f"importing labels of {case}")
                ws._import_original(case)
            ws.log("init", data=meta["data"], cases=len(cases), with_labels=len(with_seg))
            if root.exists():
                root.rmdir()
            os.replace(staging, root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if progress:
            progress(1.0, f"{len(cases)} cases")
        return cls(root, meta)

    def _import_original(self, case: str) -> str:
        from lnq_napari.io.readers import read_labels, read_volume

        entry = self.meta["cases"][case]
        ct = read_volume(entry["ct"])
        labels = read_labels(entry["seg"], reference=ct)
        return self.add_label_version(case, labels, "original", log=False)

    # ------------------------------------------------------------ cases
    def case_ids(self) -> list[str]:
        return sorted(self.meta["cases"])

    def _case(self, case: str) -> dict:
        try:
            return self.meta["cases"][case]
        except KeyError:
            raise LNQError(f"case {case!r} is not in workspace {self.root}; see `case_ids()`") from None

    def ct_path(self, case: str) -> Path:
        return Path(self._case(case)["ct"])

    def seg_path(self, case: str) -> Path | None:
        seg = self._case(case).get("seg")
        return Path(seg) if seg else None

    def full_path(self, case: str) -> Path | None:
        """Complete truth (phantom only). For benchmarks; fine-tuning never reads it."""
        full = self._case(case).get("full")
        return Path(full) if full else None

    def read_ct(self, case: str) -> Volume:
        from lnq_napari.io.readers import read_volume

        return read_volume(self.ct_path(case))

    # ------------------------------------------------------------ label versions
    def _label_dir(self, case: str) -> Path:
        self._case(case)
        return self.root / "labels" / case

    def versions(self, case: str) -> list[dict]:
        """Committed label versions of ``case`` (provenance dicts), oldest first.

        A label file without provenance, or whose checksum does not match, is skipped.
        """
        folder = self._label_dir(case)
        if not folder.is_dir():
            return []
        found = []
        for p in folder.iterdir():
            m = _VERSION_RE.match(p.name)
            if not m:
                continue
            try:
                prov = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            label = folder / prov.get("file", "")
            if not label.is_file() or label.stat().st_size != prov.get("bytes"):
                continue
            found.append((int(m.group(1)), prov))
        return [prov for _, prov in sorted(found, key=lambda t: t[0])]

    def _next_number(self, folder: Path) -> int:
        numbers = [0]
        if folder.is_dir():
            for p in folder.iterdir():
                m = re.match(r"^v(\d{3,})\.", p.name)
                if m:
                    numbers.append(int(m.group(1)))
        return max(numbers) + 1

    def add_label_version(
        self, case: str, labels: Volume, source: str, model_version: str | None = None, edits: int = 0,
        parent: str | None = None, log: bool = True, **fields,
    ) -> str:
        """Store ``labels`` as a new version of ``case``; returns its id (``"v002"``).

        ``source`` is one of original, prediction, correction, autosave. ``parent`` defaults to the
        latest committed version. Extra keyword fields are kept in the provenance.
        """
        if source not in SOURCES:
            raise LNQError(f"label source {source!r} is unknown; use one of {', '.join(SOURCES)}")
        with self._lock:
            folder = self._label_dir(case)
            folder.mkdir(parents=True, exist_ok=True)
            existing = self.versions(case)
            if parent is None and existing:
                parent = existing[-1]["version"]
            number = self._next_number(folder)
            version = f"v{number:03d}"
            label_path = folder / f"{version}{_LABEL_SUFFIX}"
            prov = {
                "version": version, "case": case, "source": source, "model_version": model_version,
                "time": _now(), "edits": int(edits), "parent": parent, "file": label_path.name,
                **fields,
            }
            _write_labels(label_path, labels, {"lnq_version": version, "lnq_source": source})
            prov["bytes"] = label_path.stat().st_size
            prov["sha256"] = _sha256(label_path)
            atomic_write_text(folder / f"{version}.json", json.dumps(prov, indent=1))
            if log:
                self.log(source if source != "prediction" else "predict", case=case, version=version,
                         model_version=model_version, edits=int(edits), parent=parent)
        return version

    def latest_version(self, case: str, source: str | tuple[str, ...] | None = None) -> dict | None:
        """Provenance of the newest version (optionally of a given source), or None."""
        sources = (source,) if isinstance(source, str) else source
        for prov in reversed(self.versions(case)):
            if sources is None or prov["source"] in sources:
                return prov
        return None

    def version_info(self, case: str, version: str) -> dict:
        for prov in self.versions(case):
            if prov["version"] == version:
                return prov
        raise LNQError(f"case {case!r} has no label version {version!r}; see `versions({case!r})`")

    def label_path(self, case: str, version: str) -> Path:
        """The file of one label version."""
        return self._label_dir(case) / self.version_info(case, version)["file"]

    def read_labels(self, case: str, version: str) -> Volume:
        """The label volume of one version."""
        from lnq_napari.io.readers import read_labels

        prov = self.version_info(case, version)
        volume = read_labels(self.label_path(case, version))
        volume.meta = {**volume.meta, "lnq_version": version, "lnq_source": prov["source"]}
        return volume

    def latest_labels(self, case: str, source: str | tuple[str, ...] | None = None) -> Volume | None:
        """The newest label volume (optionally of a given source), or None when there is none."""
        prov = self.latest_version(case, source)
        return None if prov is None else self.read_labels(case, prov["version"])

    def corrected_cases(self) -> list[str]:
        """Cases with at least one correction."""
        return [c for c in self.case_ids() if self.latest_version(c, "correction") is not None]

    # ------------------------------------------------------------ journal
    @property
    def journal_path(self) -> Path:
        return self.root / "journal.jsonl"

    def log(self, action: str, **fields) -> dict:
        """Append one action to the journal (flushed and fsynced); returns the entry."""
        entry = {"time": _now(), "action": action, **fields}
        line = json.dumps(entry, default=str) + "\n"
        with self._lock:
            path = self.journal_path
            prefix = ""
            if path.exists() and path.stat().st_size:
                with open(path, "rb") as handle:
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        prefix = "\n"  # a torn line from a crash: start on a fresh line
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(prefix + line)
                handle.flush()
                os.fsync(handle.fileno())
        return entry

    def journal(self, action: str | None = None) -> list[dict]:
        """Journal entries, oldest first (optionally of one action). Torn lines are skipped."""
        if not self.journal_path.exists():
            return []
        entries = []
        for line in self.journal_path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (action is None or entry.get("action") == action):
                entries.append(entry)
        return entries

    # ------------------------------------------------------------ models
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def _registry(self) -> dict:
        path = self.models_dir / "registry.json"
        if not path.exists():
            return {"versions": []}
        return json.loads(path.read_text())

    def _save_registry(self, registry: dict) -> None:
        atomic_write_text(self.models_dir / "registry.json", json.dumps(registry, indent=1, default=str))

    def models(self) -> list[dict]:
        """Registered model versions, oldest first."""
        return self._registry()["versions"]

    def next_model_version(self) -> str:
        numbers = [int(v["id"][1:]) for v in self.models() if re.fullmatch(r"m\d+", v["id"])]
        if self.models_dir.is_dir():
            numbers += [int(p.name[1:]) for p in self.models_dir.iterdir() if re.fullmatch(r"m\d+", p.name)]
        return f"m{max(numbers, default=0) + 1:03d}"

    def register_model(
        self, path: str | Path, parent: str | None = None, training_cases: list[str] | None = None,
        metrics: dict | None = None, version: str | None = None, copy: bool = True, **fields,
    ) -> str:
        """Add a model folder to the registry (copied under ``models/<version>`` unless already there).

        The new version is not active; call :meth:`activate`. Returns the version id.
        """
        src = Path(path)
        if not (src / "config.json").is_file():
            raise LNQError(f"{src} is not a model folder (no config.json); give a trained model folder")
        with self._lock:
            version = version or self.next_model_version()
            if any(v["id"] == version for v in self.models()):
                raise LNQError(f"model version {version} is already registered; pick another id")
            dest = self.models_dir / version
            if src.resolve() != dest.resolve():
                if not copy:
                    dest = src.resolve()
                else:
                    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self.models_dir))
                    for name in ("weights.safetensors", "config.json"):
                        if (src / name).exists():
                            shutil.copy2(src / name, staging / name)
                    os.replace(staging, dest)
            try:
                rel = str(dest.resolve().relative_to(self.root.resolve()))
            except ValueError:
                rel = str(dest.resolve())
            entry = {
                "id": version, "path": rel, "parent": parent, "training_cases": list(training_cases or []),
                "metrics": metrics or {}, "created": _now(), "active": False, **fields,
            }
            registry = self._registry()
            registry["versions"].append(entry)
            self._save_registry(registry)
            self.log("register_model", version=version, parent=parent,
                     training_cases=len(entry["training_cases"]), metrics=entry["metrics"])
        return version

    def model_info(self, version: str) -> dict:
        for v in self.models():
            if v["id"] == version:
                return v
        raise LNQError(f"model version {version!r} is not registered in {self.root}; see `models()`")

    def model_path(self, version: str) -> Path:
        path = Path(self.model_info(version)["path"])
        return path if path.is_absolute() else self.root / path

    def activate(self, version: str, reason: str = "") -> None:
        """Make ``version`` the active model (the one predictions and fine-tuning start from)."""
        with self._lock:
            self.model_info(version)
            registry = self._registry()
            for v in registry["versions"]:
                v["active"] = v["id"] == version
            self._save_registry(registry)
            self.log("activate", version=version, reason=reason)

    def active_model(self) -> dict | None:
        """The active model's registry entry (with an absolute ``path``), or None: use the bundled one."""
        for v in self.models():
            if v.get("active"):
                return {**v, "path": str(self.model_path(v["id"]))}
        return None

    def prediction_model(self) -> tuple[Path, str]:
        """``(model folder, version key)`` to predict with: the active model, else the bundled one.

        The bundled model's key is ``bundled-<hash of its files>`` so caches follow a new release.
        """
        active = self.active_model()
        if active is not None:
            return Path(active["path"]), active["id"]
        from lnq_napari.model import resolve_model

        path = Path(resolve_model(None))
        digest = hashlib.sha256()
        for name in ("config.json", "weights.safetensors"):
            if (path / name).is_file():
                digest.update(_sha256(path / name).encode())
        return path, f"bundled-{digest.hexdigest()[:10]}"

    # ------------------------------------------------------------ cache
    def cache_path(self, name: str) -> Path:
        return self.root / "cache" / name

    def read_cache(self, name: str) -> dict:
        path = self.cache_path(name)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def write_cache(self, name: str, data: dict) -> None:
        atomic_write_text(self.cache_path(name), json.dumps(data, indent=1, default=float))
