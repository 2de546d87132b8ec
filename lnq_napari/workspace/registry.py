"""The model registry of a workspace: ``models/registry.json`` and one folder per model version.

Each entry: id (``m001``), path (relative to the workspace when inside it), parent, training cases,
metrics, created, active, and the sha256 of the model's files when registered. A version is one of our
model folders (config.json + weights) or, with ``"kind": "nnunet"``, an nnU-Net trained model folder kept
under its own name (``models/<id>/<trainer>__<plans>__<configuration>``: plans.json, dataset.json and
each fold's checkpoint), which :func:`lnq_napari.nnunet.select.load_predictor` recognises, with the
``options`` of the model string it was given (``folds=0&mirroring=off``; none when absent), kept as they
take effect (:func:`~lnq_napari.model.nnunet_folder.effective_options`: ``mirroring=on`` or every fold
listed is no option, so one model is one version): it predicts with them, and its files are those they
choose (each fold's ``checkpoint=``, ``checkpoint_final.pth`` by default).

At most one version is active: predictions and fine-tuning start from it, and from the bundled model
while none is (the pseudo-version ``"bundled"``). A version is activated only after its folder is
checked: inside this workspace's ``models/``, complete, and unchanged since it was registered.
:class:`ModelSummary` is one version as the CLI table and the Review widget show it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import atomic_write_text, remove_stale_temps, staging_folder
from lnq_napari.io.checksum import sha256_file
from lnq_napari.io.json_text import strict_json
from lnq_napari.model import bundled_model_path, resolve_model
from lnq_napari.model.checkpoint import load_checkpoint
from lnq_napari.model.nnunet_folder import (
    CHECKPOINT,
    FINGERPRINT,
    FOLDER_FILES,
    NO_OPTIONS,
    NnunetModelSpec,
    NnunetOptions,
    effective_options,
    fold_checkpoints,
    is_nnunet_folder,
    model_spec,
    parse_options,
)
from lnq_napari.model.nnunet_labels import check_usable
from lnq_napari.workspace.files import now
from lnq_napari.workspace.lock import WorkspaceLock, check_folder

#: The staging folder of a model copy in progress (:meth:`ModelRegistry.staged`'s ``.registering.<8
#: random characters>``; ``.mNNN.<8>`` of older releases), never a fine-tune's ``.mNNN.training``
#: (:func:`scratch_name`: it may sit unchanged for as long as the training runs).
_STAGING = re.compile(r"^\.(registering|m\d+)\.(?!training$)[a-z0-9_]{8}$")

REGISTRY_FILE = "registry.json"
MODEL_FILES = ("weights.safetensors", "config.json")
NNUNET = "nnunet"  # the ``kind`` of an nnU-Net version (entries without ``kind`` are our own models)
_MODEL_ID = re.compile(r"m\d+")
_SCRATCH = re.compile(r"\.(m\d+)\.(training|candidate|fold\d+)")  # :func:`scratch_name`'s
PENDING = "pending.json"  # in models/: the plan of a fine-tune that runs or was interrupted
#: What to do about an outside model folder that is not complete.
COMPLETE_MODEL = "give a complete model folder (copy it again, or let its training finish)"
BUNDLED = "bundled"  # the pseudo-version of the bundled model: activating it deactivates every version


@dataclass(frozen=True)
class ModelSummary:
    """One model version as the user sees it. Figures are None when the version has none.

    ``dice`` / ``recall`` / ``false_nodes`` are the version's figures on its held-out corrected cases
    (mean Dice, node recall, false nodes per case); ``*_parent`` its parent's on the same cases;
    ``*_vs_parent`` the differences. ``verdict`` is "activate", "refuse" or "" (no rule ran);
    ``reason`` the rule's one line with its figures; ``figures`` all of them (bounds, vs original).
    """

    version: str
    parent: str | None
    created: str
    active: bool
    corrected_cases: int  # the corrections it trained on (replayed cases of the original data not counted)
    path: str
    kind: str = "lnq"  # or "nnunet"
    options: str = ""  # an nnU-Net version's options, as a model string writes them ("": none)
    verdict: str = ""
    reason: str = ""
    dice: float | None = None
    dice_parent: float | None = None
    recall: float | None = None
    recall_parent: float | None = None
    false_nodes: float | None = None
    false_nodes_parent: float | None = None
    figures: dict[str, float] = field(default_factory=dict)
    replaced: str | None = None  # set by api.activate_model: the version it replaced (None: nothing changed)

    def __repr__(self) -> str:  # one line per version in a notebook's list_models(); all in the fields
        said = [f"parent {self.parent}" if self.parent else "", "active" if self.active else "",
                "nnU-Net" if self.kind == NNUNET else "",
                f"{self.corrected_cases} corrected case{'s' if self.corrected_cases != 1 else ''}"
                if self.parent else "", f"verdict {self.verdict}" if self.verdict else ""]
        for name, label, digits in (("dice", "Dice", 3), ("recall", "recall", 2),
                                    ("false_nodes", "false nodes", 2)):
            mine, theirs = getattr(self, name), getattr(self, f"{name}_parent")
            if mine is not None:
                said.append(f"{label} {mine:.{digits}f}" + ("" if theirs is None else
                                                            f" (parent {theirs:.{digits}f})"))
        return f"ModelSummary({', '.join([self.version, *(s for s in said if s)])})"

    @property
    def model(self) -> str:
        """What this version predicts with, as a model field or ``--model`` takes it: its folder, an nnU-Net
        version's as ``nnunet:<folder>?<options>`` when it has options."""
        if self.kind != NNUNET or not self.options:
            return self.path
        return str(NnunetModelSpec(Path(self.path), parse_options(self.options)))

    def vs_parent(self, name: str) -> float | None:
        """``dice``, ``surface_dice`` (the rule's yardstick; from its figures only), ``recall`` or
        ``false_nodes`` minus the parent's (None when either is missing)."""
        key = f"{name}_vs_parent"
        if key in self.figures:
            return self.figures[key]
        own, parent = getattr(self, name, None), getattr(self, f"{name}_parent", None)
        return None if own is None or parent is None else own - parent

    def activation(self) -> str:
        """What activating this version did, in one sentence (:attr:`replaced`, as api.activate_model set
        it): ``active model: m002 (was m001)``, or that it already was and nothing changed."""
        if self.replaced is None:
            return f"{self.version} is already the active model; nothing changed"
        return f"active model: {self.version} (was {self.replaced})"

    def before_after(self) -> str:
        """``Dice 0.650 -> 0.800, recall 0.70 -> 0.90, false nodes per case 0.25 -> 0.50 (m001 -> m002)``,
        the figures present; "" when there are none."""
        parts = []
        for label, name, digits in (("Dice", "dice", 3), ("recall", "recall", 2),
                                    ("false nodes per case", "false_nodes", 2)):
            own, parent = getattr(self, name), getattr(self, f"{name}_parent")
            if own is not None and parent is not None:
                parts.append(f"{label} {parent:.{digits}f} -> {own:.{digits}f}")
        return f"{', '.join(parts)} ({self.parent} -> {self.version})" if parts else ""

    def missing(self) -> str:
        """One line naming the version's model folder when it is not there (moved or deleted), else ""."""
        if self.version == BUNDLED or Path(self.path).is_dir():
            return ""
        return (f"{self.version}: its model folder {self.path} is missing (moved or deleted); put it back "
                "there to predict with it")

    @classmethod
    def from_entry(cls, entry: dict, path: Path) -> ModelSummary:
        """From a registry entry: the activation rule's ``figures``, else the validation metrics before
        and after (``metrics_before`` / ``metrics_after``, or ``before`` / ``after`` of older fine-tunes)."""
        metrics = entry.get("metrics") or {}
        figures = {k: float(v) for k, v in (metrics.get("figures") or {}).items() if _is_number(v)}
        before = metrics.get("metrics_before") or metrics.get("before") or {}
        after = metrics.get("metrics_after") or metrics.get("after") or {}

        def pick(figure: str, old: str, side: dict) -> float | None:
            value = figures.get(figure, side.get(old))
            return float(value) if _is_number(value) else None

        return cls(
            version=entry["id"], parent=entry.get("parent"), created=entry.get("created", ""),
            active=bool(entry.get("active")),
            corrected_cases=len(entry.get("corrected_cases", entry.get("training_cases")) or []),
            path=str(path), kind=entry.get("kind", "lnq"), options=entry.get("options") or "",
            verdict=_verdict(metrics),
            reason=str(metrics.get("reason", "")),
            dice=pick("candidate_dice", "dice_mean", after),
            dice_parent=pick("parent_dice", "dice_mean", before),
            recall=pick("candidate_recall", "recall", after),
            recall_parent=pick("parent_recall", "recall", before),
            false_nodes=pick("candidate_false_nodes", "fp_per_case", after),
            false_nodes_parent=pick("parent_false_nodes", "fp_per_case", before),
            figures=figures,
        )


class ModelRegistry:
    """Model versions registered under ``folder`` (``<workspace>/models``) of the workspace ``root``."""

    def __init__(self, folder: str | Path, root: str | Path) -> None:
        self.folder = Path(folder)
        self.root = Path(root)
        self._lock = WorkspaceLock(self.root)

    @property
    def file(self) -> Path:
        return self.folder / REGISTRY_FILE

    def create(self) -> None:
        """Write an empty registry."""
        with self._lock:
            self._save({"versions": []})

    def entries(self) -> list[dict]:
        """Registered versions, oldest first."""
        return self._load()["versions"]

    def next_version(self) -> str:
        """One above every registered id, every ``m<N>`` folder and the version a fine-tune that runs or
        was interrupted will register (its plan, its scratch folders): a model adopted meanwhile took
        that id, and the fine-tune's work was lost at its end."""
        ids = [v["id"] for v in self.entries()]
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                ids.append(m.group(1) if (m := _SCRATCH.fullmatch(path.name)) else path.name)
            try:
                ids.append(str(json.loads((self.folder / PENDING).read_text()).get("version")))
            except (OSError, ValueError, AttributeError):
                pass
        numbers = [int(i[1:]) for i in ids if _MODEL_ID.fullmatch(i)]
        return f"m{max(numbers, default=0) + 1:03d}"

    def register(
        self, path: str | Path, parent: str | None = None, training_cases: list[str] | None = None,
        metrics: dict | None = None, version: str | None = None, copy: bool = True,
        options: NnunetOptions = NO_OPTIONS, **fields,
    ) -> dict:
        """Add a model folder (copied to ``<folder>/<version>``, an nnU-Net one to
        ``<folder>/<version>/<its name>``, unless ``copy`` is False) that predicts with ``options`` (an
        nnU-Net model string's, kept as they take effect); returns its entry, not active."""
        src = Path(path)
        kind, options = _registrable(src, options)
        inner = Path(src.name) if kind == NNUNET else Path()
        staged = self._is_staged(src, kind)
        in_place = version is not None and src.resolve() == (self.folder / version / inner).resolve()
        if copy and not staged and not in_place:
            with self.staged(src, options) as copied:  # the copy, before the lock
                return self.register(copied, parent, training_cases, metrics, version, options=options,
                                     **fields)
        checksums = _checksums(src, kind, options.checkpoint_file)  # of the files placed: a copy is renamed
        with self._lock:  # id, folder and entry: read-modify-write of the registry, held briefly
            version = version or self.next_version()
            if any(v["id"] == version for v in self.entries()):
                raise LNQError(f"model version {version} is already registered; pick another id")
            if staged:
                os.replace(src.parent if kind == NNUNET else src, self.folder / version)
            dest = self.folder / version / inner if staged else src.resolve()
            entry = {"id": version, "path": self._relative(dest), "parent": parent,
                     "training_cases": list(training_cases or []), "metrics": metrics or {},
                     "created": now(), "active": False, "sha256": checksums,
                     **({"kind": NNUNET} if kind == NNUNET else {}),
                     **({"options": options.query()} if options.query() else {}), **fields}
            registry = self._load()
            registry["versions"].append(entry)
            self._save(registry)
        return entry

    def find(self, path: str | Path, options: NnunetOptions = NO_OPTIONS) -> str | None:
        """The version registered from the same model files as the folder ``path`` (each file's sha256
        equal) with the same ``options`` as they take effect, or None: a model registered once is not
        registered again."""
        folder = Path(path)
        kind = model_kind(folder)
        if kind is None:
            return None
        options = _effective(folder, kind, options)
        digests = _checksums(folder, kind, options.checkpoint_file)
        return next((e["id"] for e in self.entries() if e.get("sha256") == digests
                     and _effective(folder, kind, entry_options(e)) == options), None)

    def info(self, version: str) -> dict:
        for entry in self.entries():
            if entry["id"] == version:
                return entry
        raise LNQError(f"model version {version!r} is not registered in {self.root}; "
                       f"known versions: {', '.join(self.known())}")

    def known(self) -> list[str]:
        """The registered ids and ``"bundled"``: what :meth:`activate` accepts."""
        return [e["id"] for e in self.entries()] + [BUNDLED]

    def path(self, version: str) -> Path:
        if version == BUNDLED:
            return bundled_model_path()
        return self._path(self.info(version))

    def _path(self, entry: dict) -> Path:
        path = Path(entry["path"])
        return path if path.is_absolute() else self.root / path

    def model(self, version: str) -> Path | NnunetModelSpec:
        """What ``version`` predicts with, as :func:`~lnq_napari.nnunet.select.load_predictor` takes it:
        our model's folder, an nnU-Net version's folder with its options."""
        if version == BUNDLED:
            return bundled_model_path()
        entry = self.info(version)
        path = self._path(entry)
        return NnunetModelSpec(path, entry_options(entry)) if is_nnunet_version(entry) else path

    def version_of(self, name: str) -> str:
        """The version ``name`` means: a registered id, ``"bundled"``, or a model folder of this workspace
        (LNQError for anything else, with the known versions). The bundled model may also be named by its
        key (``bundled-<hash>``, as a version's parent names it)."""
        if name in self.known():
            return name
        if name.startswith(f"{BUNDLED}-"):
            if name != bundled_key(Path(resolve_model(None))):
                raise LNQError(f"{name} is the bundled model of another lnq-napari release; activate "
                               f"{BUNDLED} for this release's")
            return BUNDLED
        spec = model_spec(name)
        folder = spec.folder
        if not name.strip() or not folder.is_dir():
            self.info(name)  # unknown: the error lists the known versions
        for version in self.known():
            if folder.resolve() == self.path(version).resolve():
                entry = None if version == BUNDLED else self.info(version)
                kind = NNUNET if is_nnunet_version(entry) else "lnq"
                own = _effective(folder, kind, entry_options(entry))
                if spec.options != NO_OPTIONS and _effective(folder, kind, spec.options) != own:
                    raise LNQError(f"{name} names {version} with other options than it was registered with "
                                   f"({own.query() or 'none'}); activate {version} as it is, or give the "
                                   "options with the model folder you trained (it is added as a version)")
                return version
        if folder.resolve().is_relative_to(self.folder.resolve()):
            raise LNQError(f"{folder} lies in this workspace's models folder but is no registered version (a "
                           f"half-written or interrupted model); activate one of {', '.join(self.known())}")
        raise LNQError(f"{folder} is not a model of this workspace (from another workspace?); "
                       f"activate one of {', '.join(self.known())}")

    def check(self, version: str) -> Path:
        """The model folder of ``version`` after checking that it may be activated: inside this
        workspace's ``models/`` (or the bundled model), its files (config.json and weights; an nnU-Net
        version's plans.json, dataset.json and checkpoints) present and readable, and matching the sha256
        recorded at registration and in config.json. LNQError otherwise."""
        if version == BUNDLED:
            return Path(resolve_model(None))
        entry = self.info(version)
        path = self._path(entry)
        inside = path.resolve().is_relative_to(self.folder.resolve())
        if not inside and path.resolve() != bundled_model_path().resolve():
            raise LNQError(f"model {version} is at {path}, outside {self.folder} (from another workspace); "
                           "fine-tune in this workspace, or activate one of its own versions")
        if not path.is_dir():
            raise LNQError(f"model {version}'s folder {path} is missing (moved or deleted); put it back "
                           "there, or activate another version")
        check_model_files(path, f"model {version}", entry.get("sha256") or {}, is_nnunet_version(entry))
        return path

    def activate(self, version: str) -> str:
        """Make ``version`` the only active one (``"bundled"``: none); returns the version active before.

        The folder is checked first (:meth:`check`); on any LNQError the registry is unchanged.
        """
        self.check(version)
        with self._lock:
            registry = self._load()
            previous = next((e["id"] for e in registry["versions"] if e.get("active")), BUNDLED)
            for entry in registry["versions"]:
                entry["active"] = entry["id"] == version
            self._save(registry)
        return previous

    def active(self) -> dict | None:
        """The active entry with an absolute ``path``, or None."""
        for entry in self.entries():
            if entry.get("active"):
                return {**entry, "path": str(self.path(entry["id"]))}
        return None

    def prediction_model(self) -> tuple[Path | NnunetModelSpec, str]:
        """``(model, version key)``: the active model (:meth:`model`: an nnU-Net version's folder, with
        its options when it has any, which :func:`~lnq_napari.nnunet.select.load_predictor` loads), else
        the bundled one (key ``bundled-<hash of its files>``, so caches follow a new release)."""
        active = self.active()
        if active is not None:
            return self.model(active["id"]), active["id"]
        path = Path(resolve_model(None))
        return path, bundled_key(path)

    def summaries(self) -> list[ModelSummary]:
        """The bundled model (active while no version is), then every version, oldest first."""
        entries = self.entries()
        bundled = ModelSummary(BUNDLED, None, "", not any(e.get("active") for e in entries), 0,
                               str(bundled_model_path()), reason="the model shipped with lnq-napari")
        versions = [ModelSummary.from_entry(e, self._path(e)) for e in entries]
        key = bundled_key(bundled_model_path()) if versions else None
        return [bundled] + [replace(m, parent=shown_parent(m.parent, key)) for m in versions]

    @contextlib.contextmanager
    def staged(self, path: str | Path, options: NnunetOptions = NO_OPTIONS) -> Iterator[Path]:
        """The model folder ``path`` copied into a staging folder of ``<folder>`` without the lock (a large
        model's copy under it held every label save back), for :meth:`register` to rename to
        ``<folder>/<version>`` (an nnU-Net folder keeps its name inside: a registered version can be a
        fine-tune's parent). The copy is removed on exit unless registered."""
        src = Path(path)
        kind, options = _registrable(src, options)
        check_folder(self.root)  # a workspace moved meanwhile: no shell made at the old path
        self.folder.mkdir(exist_ok=True)
        remove_stale_temps(self.folder, pattern=_STAGING)  # copies a killed registration left
        staging = staging_folder(self.folder, ".registering.")
        copy = staging / src.name if kind == NNUNET else staging
        try:
            for name in _model_files(src, kind, options.checkpoint_file):
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / name, copy / name)
                os.utime(staging)  # a copy in progress is never stale, however long it takes
            yield copy
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when registered

    def _is_staged(self, src: Path, kind: str) -> bool:
        """Whether ``src`` is a copy :meth:`staged` made (an nnU-Net folder: inside one)."""
        staging = src.parent if kind == NNUNET else src
        return bool(_STAGING.match(staging.name)) and staging.parent.resolve() == self.folder.resolve()

    def _relative(self, dest: Path) -> str:
        try:
            return str(dest.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(dest.resolve())

    def _load(self) -> dict:
        if not self.file.exists():
            return {"versions": []}
        try:
            registry = json.loads(self.file.read_text())
        except (OSError, ValueError) as exc:
            raise LNQError(f"{self.file} is unreadable ({exc}); restore it from a backup (the model "
                           "folders beside it are untouched)") from exc
        if not isinstance(registry, dict) or not isinstance(registry.get("versions"), list):
            raise LNQError(f"{self.file} is not a model registry; restore it from a backup")
        return registry

    def _save(self, registry: dict) -> None:
        atomic_write_text(self.file, strict_json(registry, indent=1))


def _complete_zip(path: Path) -> bool:
    """Whether ``path`` is a zip archive (torch's checkpoint format) whose every member reads back."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return archive.testzip() is None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rule_verdict(activates: bool) -> dict[str, str]:
    """The activation rule's verdict as a version's metrics keep it (apart from ``activated``: a user's
    activation while the fine-tune ran keeps a version the rule activates from being activated)."""
    return {"verdict": "activate" if activates else "refuse"}


def _verdict(metrics: dict) -> str:
    """"activate" / "refuse": the rule's stored verdict (older versions: its decision, or its reason's first
    word), else ""."""
    if metrics.get("verdict") in ("activate", "refuse"):
        return metrics["verdict"]
    decided = metrics.get("activate", metrics.get("activated"))
    if isinstance(decided, bool):
        return "activate" if decided else "refuse"
    reason = str(metrics.get("reason", "")).lower()
    for prefix, verdict in (("activate", "activate"), ("refuse", "refuse"),
                            ("validation not worse", "activate"), ("validation worse", "refuse")):
        if reason.startswith(prefix):
            return verdict
    return ""


def entry_options(entry: dict | None) -> NnunetOptions:
    """The options a registry entry predicts with (none for entries without ``options``: ours, and
    nnU-Net versions registered before versions kept them). LNQError naming the version for options this
    release cannot read (a registry written by a newer release, or edited by hand)."""
    query = (entry or {}).get("options") or ""
    return parse_options(query, f"version {entry.get('id', '?')}'s options ({query}) in the workspace's "
                                "model registry") if query else NO_OPTIONS


def _registrable(src: Path, options: NnunetOptions) -> tuple[str, NnunetOptions]:
    """The kind of the model folder ``src`` and ``options`` as they take effect on it; LNQError unless
    it can be registered with them."""
    kind = model_kind(src)
    if kind is None:
        raise LNQError(f"{src} is not a model folder (no config.json, nor nnU-Net's plans.json and "
                       "dataset.json); give a trained model folder")
    options = _effective(src, kind, options)
    if kind == NNUNET and not fold_checkpoints(src, options.checkpoint_file):
        raise LNQError(f"{src} has no fold_*/{options.checkpoint_file}; finish training a fold first")
    return kind, options


def _effective(folder: Path, kind: str, options: NnunetOptions) -> NnunetOptions:
    """``options`` as they take effect on the model folder ``folder`` of ``kind``
    (:func:`~lnq_napari.model.nnunet_folder.effective_options`); LNQError when they are set for one of our
    models (the bundled one too), or choose folds or a checkpoint ``folder`` lacks."""
    if options != NO_OPTIONS and kind != NNUNET:
        raise LNQError(f"{folder} is an lnq-napari model; the options after '?' ({options.query()}) apply "
                       "to nnU-Net models only: give the folder without them")
    return effective_options(folder, options)


def is_nnunet_version(entry: dict | None) -> bool:
    """True for a registry entry of an nnU-Net model (``kind: nnunet``)."""
    return entry is not None and entry.get("kind") == NNUNET


def model_kind(path: Path) -> str | None:
    """"lnq" for one of our model folders (config.json), "nnunet" for an nnU-Net trained model folder
    (plans.json and dataset.json), else None."""
    if (path / "config.json").is_file():
        return "lnq"
    return NNUNET if is_nnunet_folder(path) else None


def _model_files(folder: Path, kind: str = "lnq", checkpoint: str = CHECKPOINT) -> list[str]:
    """The files of a model folder that are copied and checksummed (relative, ``/``-separated): an
    nnU-Net folder's each fold's ``checkpoint``."""
    if kind != NNUNET:
        return [name for name in MODEL_FILES if (folder / name).is_file()]
    extra = [FINGERPRINT] if (folder / FINGERPRINT).is_file() else []
    return [*FOLDER_FILES, *extra, *(p.relative_to(folder).as_posix()
                                     for p in fold_checkpoints(folder, checkpoint))]


def _checksums(folder: Path, kind: str = "lnq", checkpoint: str = CHECKPOINT) -> dict[str, str]:
    return {name: sha256_file(folder / name) for name in _model_files(folder, kind, checkpoint)}


def _why(exc: Exception) -> str:
    """An exception in a few words (its strerror, else its text up to the first line break)."""
    return str(getattr(exc, "strerror", None) or exc).splitlines()[0]


def scratch_name(version: str, kind: str) -> str:
    """The name of a fine-tune's scratch folder in ``models/`` for the version it will register (kind
    "training", "candidate" or "fold<k>"): :meth:`ModelRegistry.next_version` keeps that version free."""
    return f".{version}.{kind}"


def check_outside_model(path: Path, what: str, options: NnunetOptions = NO_OPTIONS) -> None:
    """LNQError unless ``path``, a model folder from outside any workspace, may be adopted with
    ``options``: an nnU-Net folder's files (:func:`check_model_files`), the folds the options choose and
    what lnq-napari can predict with (:func:`~lnq_napari.model.nnunet_labels.check_usable`);
    for ours, no options and the network its config describes, built with its weights loaded (which
    checks the files too; a config of another kind or another architecture was adopted and activated,
    and every prediction failed)."""
    kind = model_kind(path)
    options = _effective(path, kind, options)
    if kind == NNUNET:
        check_model_files(path, what, fix=COMPLETE_MODEL, checkpoint=options.checkpoint_file)
        check_usable(path)  # the CT alone as input, a node label: else refused at its first prediction
    else:
        load_checkpoint(path)


def check_model_files(path: Path, what: str, recorded: dict | None = None, nnunet: bool | None = None,
                      fix: str = "activate another version or fine-tune again", checkpoint: str = CHECKPOINT
                      ) -> None:
    """LNQError (ending with ``fix``) unless the model folder ``path`` (``what``, e.g. "model m002", names
    it in the message) has its files (config.json and weights; an nnU-Net folder's plans.json,
    dataset.json and each fold's ``checkpoint``) present, non-empty and readable, matching the sha256 in
    ``recorded`` (file name -> digest, those recorded at registration) and the weights' sha256 in
    config.json."""
    recorded = recorded or {}
    nnunet = model_kind(path) == NNUNET if nnunet is None else nnunet
    required = (tuple(recorded) or FOLDER_FILES) if nnunet else MODEL_FILES
    try:
        for name in required:
            if not (path / name).is_file() or not (path / name).stat().st_size:
                raise LNQError(f"{what} is incomplete: {path / name} is missing or empty "
                               f"(a half-written folder); {fix}")
        checkpoints = fold_checkpoints(path, checkpoint) if nnunet and not recorded else None
        if checkpoints is not None and not checkpoints:
            raise LNQError(f"{what} has no fold_*/{checkpoint}; finish training a fold first")
        if checkpoints and not all(c.stat().st_size for c in checkpoints):
            raise LNQError(f"{what} is incomplete: a fold_*/{checkpoint} is empty (a half-written "
                           f"folder); {fix}")
        for file in checkpoints or ():  # torch's zip archive, read whole (CRCs), nothing unpickled
            if not _complete_zip(file):
                raise LNQError(f"{what} is damaged: {file} is not a complete checkpoint (cut short or "
                               f"altered); {fix}")
        for name in required if nnunet and not recorded else ():
            if name.endswith(".json"):
                json.loads((path / name).read_text(encoding="utf-8"))  # ValueError: damaged, below
        config = {} if nnunet else json.loads((path / "config.json").read_text(encoding="utf-8"))
        expected = [(name, recorded[name], "at registration") for name in required if name in recorded]
        if isinstance(config, dict) and config.get("weights_sha256"):
            expected.append(("weights.safetensors", config["weights_sha256"], "in config.json"))
        digests = {name: sha256_file(path / name) for name in {name for name, _, _ in expected}}
        for name, digest, where in expected:
            if digests[name] != digest:
                raise LNQError(f"{what}: {path / name} does not match the sha256 recorded "
                               f"{where} (half-written or altered); {fix}")
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise LNQError(f"{what} cannot be read ({_why(exc)}; a half-written folder?); {fix}") from exc


def shown_parent(parent: str | None, key: str | None = None) -> str | None:
    """A version's parent as ``workspace models`` names it: this release's bundled model (its ``key``,
    computed when not given) as "bundled"; another release's bundled key and a version id as they are."""
    if not parent or not parent.startswith(f"{BUNDLED}-"):
        return parent
    return BUNDLED if parent == (key or bundled_key(bundled_model_path())) else parent


def bundled_key(path: Path) -> str:
    """``bundled-<first 10 hex of the hash of config.json and weights.safetensors>``."""
    digest = hashlib.sha256()
    for name in ("config.json", "weights.safetensors"):
        if (path / name).is_file():
            digest.update(sha256_file(path / name).encode())
    return f"bundled-{digest.hexdigest()[:10]}"
