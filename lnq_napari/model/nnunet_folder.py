"""A trained nnU-Net model folder (``nnUNet_results/DatasetNNN_X/<trainer>__<plans>__<config>``): what it
must hold, which folds it has, its version (folder + checkpoint hash), and the settings it predicts with
unless told otherwise. Needs no nnunetv2."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from lnq_napari.errors import LNQError
from lnq_napari.io.checksum import sha256_file
from lnq_napari.model.config import InferenceConfig, parse_switch
from lnq_napari.model.nnunet_labels import argmax_decides, node_outputs

PREFIX = "nnunet:"
CHECKPOINT = "checkpoint_final.pth"
FOLDER_FILES = ("plans.json", "dataset.json")  # what makes a folder a trained nnU-Net model
FINGERPRINT = "dataset_fingerprint.json"  # kept beside them when present (a copy of the model takes it)
TILE_STEP = 0.5  # nnU-Net's own default tile step
MIRRORING = True  # nnU-Net's own default: test-time mirroring on
# nnU-Net's argmax, without our bundled model's size, peak and HU filters (nnU-Net learned what a node is);
# its threshold is where the node probability is cut when a threshold is asked (``?threshold=``, even 0.5):
# without one, a model of more than two labels keeps nnU-Net's argmax over all of them (NnunetOptions.argmax)
NNUNET_INFERENCE = InferenceConfig(threshold=0.5, min_component_mm3=0.0, max_mean_hu=None,
                                   mediastinum_margin_mm=None, min_peak=0.0)
# post-processing settings (InferenceConfig fields) a model string may set, e.g. ?min_component_mm3=300
POSTPROCESSING = ("threshold", "min_component_mm3", "min_peak", "max_mean_hu", "mediastinum_margin_mm")
#: What ``none`` (or ``off``, or nothing) sets a setting to: off (no size filter, no peak floor); a
#: ``threshold=none`` sets none, leaving nnU-Net's argmax (a None reached post-processing as a TypeError).
_OFF = {"min_component_mm3": 0.0, "min_peak": 0.0}
#: The values those settings may take (a threshold of 2 gave an empty mask without a word).
_RANGES = {"threshold": (0.0, 1.0), "min_peak": (0.0, 1.0), "min_component_mm3": (0.0, float("inf")),
           "mediastinum_margin_mm": (0.0, float("inf"))}


@dataclass(frozen=True)
class NnunetOptions:
    """The prediction settings a model string sets (``?folds=0,1&tile_step=0.5&...``); None: not set."""

    folds: tuple[str, ...] | None = None  # () (``folds=``): every fold, as None
    checkpoint: str | None = None
    tile_step: float | None = None
    mirroring: bool | None = None
    inference: dict[str, float | None] = field(default_factory=dict, hash=False)  # InferenceConfig fields

    def kwargs(self) -> dict:
        """The settings given, as keyword arguments of :class:`~lnq_napari.nnunet.backend.NnUNetPredictor`."""
        given = {k: getattr(self, k) for k in ("folds", "checkpoint", "tile_step", "mirroring")}
        return {k: v for k, v in given.items() if v is not None} | (
            {"inference": dict(self.inference)} if self.inference else {})

    def query(self) -> str:
        """The options as a model string writes them after ``?`` (what :func:`parse_options` reads back);
        "" when none is set."""
        pairs = [] if self.folds is None else [("folds", ",".join(self.folds))]
        pairs += [] if self.checkpoint is None else [("checkpoint", self.checkpoint)]
        pairs += [] if self.tile_step is None else [("tile_step", repr(self.tile_step))]
        pairs += [] if self.mirroring is None else [("mirroring", "on" if self.mirroring else "off")]
        pairs += [(k, "none" if v is None else repr(v)) for k, v in sorted(self.inference.items())]
        return urlencode(pairs, safe=",")

    @property
    def argmax(self) -> bool:
        """True when no threshold is set: nnU-Net's argmax decides (a model of more than two labels), not
        the node probability against a threshold (an explicit ``threshold=0.5`` too)."""
        return "threshold" not in self.inference

    @property
    def checkpoint_file(self) -> str:
        """The checkpoint file each fold predicts with: its own, else :data:`CHECKPOINT`."""
        return CHECKPOINT if self.checkpoint is None else self.checkpoint

    def predicting(self) -> tuple[float, bool, InferenceConfig]:
        """``(tile step, mirroring, post-processing)`` it predicts with: those it sets, nnU-Net's defaults
        (:data:`TILE_STEP`, :data:`MIRRORING`, :data:`NNUNET_INFERENCE`) for the rest. TypeError for an
        unknown post-processing setting."""
        return (TILE_STEP if self.tile_step is None else self.tile_step,
                MIRRORING if self.mirroring is None else self.mirroring,
                dataclasses.replace(NNUNET_INFERENCE, **self.inference))

    def settings(self) -> NnunetOptions:
        """How it predicts (tile step, mirroring, post-processing), without which weights (folds,
        checkpoint): what a model fine-tuned from this one keeps, its own weights being one fold's."""
        return dataclasses.replace(self, folds=None, checkpoint=None)


NO_OPTIONS = NnunetOptions()  # a model string without ``?``: every fold, nnU-Net's own settings


@dataclass(frozen=True)
class NnunetModelSpec:
    """What ``nnunet:<folder>[?options]`` names: the model folder and the settings to predict with. It is
    passed on as it is (:func:`~lnq_napari.nnunet.select.load_predictor` takes it); ``str()`` gives its
    model string, for a text field or a message."""

    folder: Path
    options: NnunetOptions = NO_OPTIONS

    def __str__(self) -> str:
        """``nnunet:<folder>[?options]``, which :func:`parse_model_string` reads back (a ``?`` ends a
        folder that holds one)."""
        query = self.options.query()
        return f"{PREFIX}{self.folder}" + (f"?{query}" if query or "?" in self.folder.name else "")

    def open(self) -> NnUNetModel:
        """The folder checked with the folds and checkpoint the options choose (:func:`open_model`)."""
        return open_model(self.folder, self.options.folds, self.options.checkpoint_file)


def typed_model(model: str | Path | NnunetModelSpec) -> Path | NnunetModelSpec:
    """A model as predictor factories take it: a spec as it is, anything else as a folder (a Path)."""
    return model if isinstance(model, NnunetModelSpec) else Path(model)


def parse_model_string(text: str | Path) -> NnunetModelSpec | None:
    """The folder and options of ``nnunet:<folder>[?folds=0,1&tile_step=0.5&mirroring=off&checkpoint=...]``
    (and post-processing: ``threshold``, ``min_component_mm3``, ``min_peak``, ``max_mean_hu``,
    ``mediastinum_margin_mm``); None for text without the ``nnunet:`` prefix. LNQError for an unknown
    option, a bad value or no folder.

    The options ride in the model string, so every place that takes a model (CLI ``--model``, the
    Segment widget's model field) can set them. They follow the last ``?``; one followed by a ``/`` lies
    in the folder's path (options hold none), so a workspace under ``review?2/`` names its versions.
    """
    text = str(text)
    if not text.startswith(PREFIX):
        return None
    body, mark, query = text[len(PREFIX):].rpartition("?")
    if not mark or "/" in query or "\\" in query:
        body, query = text[len(PREFIX):], ""
    options = parse_options(query, text)
    if not body.strip():
        raise LNQError(f"{text} names no folder; give nnunet:<trained model folder> "
                       "(nnUNet_results/DatasetNNN_X/<trainer>__<plans>__<configuration>)")
    return NnunetModelSpec(Path(body).expanduser(), options)


def parse_options(query: str, text: str | None = None) -> NnunetOptions:
    """The options of a model string's ``query`` (after ``?``); LNQError for an unknown option or a bad
    value (``text``, the whole model string, names it)."""
    text = text or f"{PREFIX}...?{query}"
    options: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "folds":
            options["folds"] = tuple(f.strip() for f in value.split(",") if f.strip())
        elif key == "tile_step":
            try:
                options["tile_step"] = float(value)
            except ValueError:
                raise LNQError(f"tile_step={value!r} in {text} is not a number "
                               "(nnU-Net's default: 0.5)") from None
            if not 0.0 < options["tile_step"] <= 1.0:
                raise LNQError(f"tile_step={value} in {text} must be above 0 and at most 1 "
                               "(nnU-Net's default: 0.5)")
        elif key == "mirroring":
            if (switch := parse_switch(value)) is None:
                raise LNQError(f"mirroring={value!r} in {text} must be on or off")
            options["mirroring"] = switch
        elif key == "checkpoint":
            if not value.strip() or any(sep in value for sep in ("/", "\\")):
                raise LNQError(f"checkpoint={value!r} in {text} names no checkpoint file; give the file name "
                               "in each fold_<k> folder (e.g. checkpoint_best.pth) or leave checkpoint out")
            options["checkpoint"] = value
        elif key in POSTPROCESSING:
            try:
                number = None if value.lower() in ("", "none", "off") else float(value)
            except ValueError:
                raise LNQError(f"{key}={value!r} in {text} is not a number (or none)") from None
            low, high = _RANGES.get(key, (float("-inf"), float("inf")))
            if number is not None and not low <= number <= high:
                raise LNQError(f"{key}={value} in {text} lies outside {low:g} to {high:g}")
            if number is None and key == "threshold":  # no threshold: nnU-Net's argmax, as leaving it out
                options.get("inference", {}).pop(key, None)
                continue
            options.setdefault("inference", {})[key] = _OFF.get(key) if number is None else number
        else:
            raise LNQError(f"unknown nnU-Net model option {key!r} in {text}; use folds, tile_step, "
                           f"mirroring, checkpoint or {', '.join(POSTPROCESSING)}")
    return NnunetOptions(**options)


@dataclass(frozen=True)
class NnUNetModel:
    """A checked nnU-Net model folder: the folds used, their checkpoint files and the model version."""

    path: Path
    folds: tuple[str, ...]  # "0".."4" or "all"
    checkpoint: str
    content: str  # SHA-256 over plans.json, dataset.json and the used folds' checkpoints

    @property
    def version(self) -> str:
        """``nnunet:<dataset>/<model folder>@<12 hex>``: retraining a fold gives a new version."""
        return f"{PREFIX}{self.path.parent.name}/{self.path.name}@{self.content[:12]}"

    def checkpoint_path(self, fold: str) -> Path:
        return self.path / f"fold_{fold}" / self.checkpoint


def model_spec(model: str | Path | NnunetModelSpec) -> NnunetModelSpec:
    """``nnunet:<folder>[?options]`` parsed (:func:`parse_model_string`), a spec as it is, or a plain
    folder, no options."""
    if isinstance(model, NnunetModelSpec):
        return model
    spec = parse_model_string(model)
    return spec if spec is not None else NnunetModelSpec(Path(model).expanduser())


def is_nnunet_folder(path: str | Path | NnunetModelSpec) -> bool:
    """True for a folder holding nnU-Net's ``plans.json`` and ``dataset.json`` (a trained model folder)."""
    path = model_spec(path).folder
    return all((path / name).is_file() for name in FOLDER_FILES)


def fold_checkpoints(path: Path, checkpoint: str = CHECKPOINT) -> list[Path]:
    """Each fold's ``fold_<f>/<checkpoint>`` file in the model folder ``path``, sorted by path."""
    return sorted(p for p in path.glob(f"fold_*/{checkpoint}") if p.is_file())


def available_folds(path: Path, checkpoint: str = CHECKPOINT) -> list[str]:
    """Folds of ``path`` with ``fold_<f>/<checkpoint>``: numbers in order, then "all"."""
    found = [p.parent.name[len("fold_"):] for p in fold_checkpoints(path, checkpoint)]
    return sorted((f for f in found if f.isdigit()), key=int) + (["all"] if "all" in found else [])


def content_digest(path: Path, folds, checkpoint: str) -> str:
    """SHA-256 over plans.json, dataset.json and the used folds' checkpoints of the model folder ``path``:
    the same for a copy anywhere."""
    digest = hashlib.sha256()
    for name in FOLDER_FILES:
        digest.update(f"{name}:{sha256_file(path / name)}\n".encode())
    for fold in folds:
        digest.update(f"fold_{fold}:{sha256_file(path / f'fold_{fold}' / checkpoint)}\n".encode())
    return digest.hexdigest()


def open_model(model: str | Path, folds=None, checkpoint: str = CHECKPOINT) -> NnUNetModel:
    """Check an nnU-Net model folder; LNQError when it is not one or lacks the folds asked for.

    ``folds``: None for every fold that has ``checkpoint`` (as nnU-Net's own auto-detection, plus
    ``fold_all`` when it is the only one), else the folds to ensemble ("0".."4", "all").
    """
    path = model_spec(model).folder
    if not path.is_dir():
        raise LNQError(f"nnU-Net model folder {path} does not exist; give the trained model folder "
                       "(nnUNet_results/DatasetNNN_X/nnUNetTrainer__nnUNetPlans__3d_fullres)")
    if not is_nnunet_folder(path):
        raise LNQError(f"{path} is not an nnU-Net trained model folder (no plans.json and dataset.json); "
                       + _where_the_model_is(path))
    for name in ("plans.json", "dataset.json"):  # else nnU-Net's loader fails and the checkpoint is blamed
        try:
            if not isinstance(json.loads((path / name).read_text(encoding="utf-8")), dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise LNQError(f"{path / name} cannot be read ({exc}); copy it again from the folder "
                           "nnUNetv2_train wrote") from exc
    chosen = chosen_folds(path, folds, checkpoint)
    return NnUNetModel(path, chosen, checkpoint, content_digest(path, chosen, checkpoint))


def _where_the_model_is(path: Path) -> str:
    """What to give instead of ``path``, a folder near a model folder: a fold folder's parent with that
    fold, the model folders below a dataset or results folder, else nnU-Net's layout."""
    fold = path.name[len("fold_"):] if path.name.startswith("fold_") else None
    if fold and is_nnunet_folder(path.parent):
        return f"it is a fold of the model folder {path.parent}: give that folder (add ?folds={fold} for " \
               "this fold alone)"
    below = sorted(p.parent for pattern in ("*/plans.json", "*/*/plans.json") for p in path.glob(pattern)
                   if is_nnunet_folder(p.parent))
    if below:
        more = f" and {len(below) - 3} more" if len(below) > 3 else ""
        names = ", ".join(str(p) for p in below[:3]) + more
        return f"give a model folder below it: {names}"
    return "give nnUNet_results/DatasetNNN_X/<trainer>__<plans>__<configuration>"


def chosen_folds(path: Path, folds=None, checkpoint: str = CHECKPOINT) -> tuple[str, ...]:
    """The folds of the model folder ``path`` that ``folds`` chooses (as :func:`open_model` takes it), in
    the folder's order (:func:`available_folds`) whatever order they are given in; LNQError when it has
    no ``checkpoint`` or lacks a fold asked for. Reads no checkpoint."""
    found = available_folds(path, checkpoint)
    if not found:
        raise LNQError(f"{path} has no fold_*/{checkpoint}; finish training a fold (nnUNetv2_train) or pass "
                       "another checkpoint (e.g. checkpoint_best.pth)")
    if folds is None or folds == () or folds == []:
        numbered = [f for f in found if f != "all"]
        return tuple(numbered or found)
    chosen = tuple(str(f) for f in ([folds] if isinstance(folds, (int, str)) else folds))
    missing = [f for f in chosen if f not in found]
    if missing:
        raise LNQError(f"{path} lacks fold(s) {', '.join(missing)} ({checkpoint}); it has fold(s) "
                       f"{', '.join(found)}: pass those or train the missing ones")
    return tuple(f for f in found if f in chosen)


def effective_options(folder: Path, options: NnunetOptions) -> NnunetOptions:
    """``options`` as they take effect on the model folder ``folder``: nnU-Net's defaults left out (but a
    threshold of 0.5 where it replaces argmax: a model of more than two softmax labels), the folds in the
    folder's order and left out when they are every fold (what no ``folds`` chooses), so two spellings of
    one model compare (and are kept) alike. LNQError when the folder lacks what they choose."""
    if options == NO_OPTIONS:
        return options
    checkpoint = options.checkpoint_file
    folds = chosen_folds(folder, options.folds, checkpoint)
    return NnunetOptions(
        folds=None if folds == chosen_folds(folder, None, checkpoint) else folds,
        checkpoint=None if checkpoint == CHECKPOINT else checkpoint,
        tile_step=None if options.tile_step == TILE_STEP else options.tile_step,
        mirroring=None if options.mirroring == MIRRORING else options.mirroring,
        inference={k: v for k, v in options.inference.items()
                   if getattr(NNUNET_INFERENCE, k) != v or (k == "threshold" and _argmax_decides(folder))})


def prediction_key(spec: NnunetModelSpec) -> str:
    """What the figures of the masks ``spec`` predicts are kept under: the content of the weights its
    options choose (wherever the folder lies: a candidate and its registered copy share it) and the
    settings it predicts with (:data:`TILE_STEP`, :data:`MIRRORING`, :data:`NNUNET_INFERENCE` unless its
    options set them), and a threshold of 0.5 where it replaces argmax (set on a model of more than two
    softmax labels: those keys alone would equal argmax's, which keep the key they had, as do other
    thresholds), and the node outputs where several labels are the nodes (their union: ``lymph_node``
    beside ``lymph_node_4R`` was ``lymph_node`` alone). LNQError when the folder lacks what the options
    choose."""
    tile_step, mirroring, inference = spec.options.predicting()
    explicit = spec.options.inference.get("threshold") == NNUNET_INFERENCE.threshold
    decides = [["threshold"]] if explicit and _argmax_decides(spec.folder) else []
    channels = _node_channels(spec.folder)
    union = [["nodes", *channels]] if len(channels) > 1 else []
    settings = json.dumps([tile_step, mirroring, dataclasses.asdict(inference), *decides, *union],
                          sort_keys=True)
    return hashlib.sha256(f"{spec.open().content}|{settings}".encode()).hexdigest()[:16]


def _dataset(folder: Path) -> dict:
    """The model folder's ``dataset.json`` ({} when unreadable)."""
    try:
        dataset = json.loads((Path(folder) / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return dataset if isinstance(dataset, dict) else {}


def _argmax_decides(folder: Path) -> bool:
    """:func:`~lnq_napari.model.nnunet_labels.argmax_decides` of the model folder's ``dataset.json``."""
    return argmax_decides(_dataset(folder).get("labels"))


def _node_channels(folder: Path) -> tuple[int, ...]:
    """The node outputs of the model folder (:func:`~lnq_napari.model.nnunet_labels.node_outputs`; none
    where its labels name no usable node label)."""
    try:
        return node_outputs(_dataset(folder), folder).channels
    except LNQError:
        return ()
