"""A model's configuration as typed dataclasses, and the one place its defaults live (those of its
preprocessing: :class:`~lnq_napari.preprocess.PreprocessingConfig`, which preprocess.py owns).

``config.json`` of a model folder is :meth:`ModelConfig.to_dict` plus the format name, format version
and weights' sha256 that :func:`~lnq_napari.model.checkpoint.save_checkpoint` adds. Reading fills any
missing setting with the dataclass default (the trainer writes the same defaults into a new model) and
keeps keys this version does not know in ``extras``, so they are written back unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from lnq_napari.errors import LNQError
from lnq_napari.preprocess import PreprocessingConfig

#: Keys of config.json that save_checkpoint writes itself (not part of the configuration).
FILE_KEYS = ("format", "format_version")


def _section(cls, data: Any, name: str):
    """``cls`` from a JSON object: known keys become fields (a section within, such as
    ``preprocessing.roi``, read the same way), the others ``extras``."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise LNQError(f"model config section {name!r} is not a JSON object; re-export the model")
    rest = copy.deepcopy(data)
    known = {}
    for f in fields(cls):
        if f.name != "extras" and f.name in rest:
            value, nested = rest.pop(f.name), f.default_factory
            is_section = isinstance(nested, type) and dataclasses.is_dataclass(nested)
            known[f.name] = _section(nested, value, f"{name}.{f.name}") if is_section else value
    return cls(**known, extras=rest)


def _plain(obj, skip_none: bool = False) -> dict:
    """A section as a JSON object: its fields (all, or those not None; a section within as its own
    object) then its extras."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name != "extras" and not (skip_none and value is None):
            out[f.name] = _plain(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
    out.update(copy.deepcopy(obj.extras))
    return out


@dataclass
class ArchitectureConfig:
    """Which network to build: a known architecture name and its JSON-safe keyword arguments."""

    name: str = "unet3d"
    kwargs: dict = field(default_factory=lambda: {
        "in_channels": 1,
        "out_channels": 1,
        "features": [8, 16, 32, 64],
        "strides": [[1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "kernels": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
    })
    extras: dict = field(default_factory=dict)


@dataclass
class InferenceConfig:
    """Sliding window and post-processing settings of :class:`~lnq_napari.inference.Predictor`."""

    patch_size: list[int] = field(default_factory=lambda: [32, 96, 96])  # z, y, x at the model spacing
    overlap: float = 0.25
    sw_batch_size: int = 1
    threshold: float = 0.5
    min_component_mm3: float = 300.0  # smaller components are dropped (a 10 mm node is 524 mm3)
    # components whose peak probability stays below are dropped (shown as unsure suggestions): the
    # highest 0.1 step that dropped no true node of the bundled model on 88 phantom cases (lowest 0.75)
    min_peak: float = 0.7
    max_mean_hu: float | None = 100.0  # brighter by mean and median: dropped (bone, enhanced vessels)
    mediastinum_margin_mm: float | None = None  # drop components outside the lungs' hull grown by this
    # (None: none dropped; the bundled model and `lnq-napari train`'s models: REGION_MARGIN_MM)
    max_suggestions: int = 10  # suggestions shown per case, best first
    extras: dict = field(default_factory=dict)


#: The mediastinum region's margin (mm) of the bundled model, which ``lnq-napari train`` writes into the
#: models it trains (nodes below the lungs on a real chest CT were kept without it).
REGION_MARGIN_MM = 10.0


@dataclass
class TrainConfig:
    """Optimiser, patch sampling and augmentation settings of the trainer."""

    patch_size: list[int] = field(default_factory=lambda: [24, 64, 64])
    batch_size: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    fg_fraction: float = 0.5
    focus_fraction: float = 0.0  # share of node-centred patches moved to focus voxels (a reviewer's edits)
    dice_weight: float = 1.0
    flip_x: bool = True
    intensity_jitter: float = 0.1
    unenhance: float = 0.8  # probability of showing a patch's enhanced structures unenhanced, as background
    warmup: int = 50
    replay_fraction: float | None = None  # share of each batch from replay cases (None: all cases alike)
    extras: dict = field(default_factory=dict)


@dataclass
class StatesConfig:
    """Rules of the label states (:func:`lnq_napari.training.labels.label_states`) a model trains with."""

    ring_mm: float = 3.0  # ring of known background around each annotated node
    smooth_mm: float = 1.0  # Gaussian smoothing before the HU rules
    low_hu: float = -70.0  # below: fat, lung, air (node HU 0.5 % quantile is -36)
    high_hu: float = 230.0  # above: bone, contrast (node HU 99.5 % quantile is 157)
    mediastinum_margin_mm: float = 5.0  # beyond the lungs' hull by more than this: background
    large_radius_mm: float = 20.0  # soft tissue containing a ball this big is not a node (0 disables)
    large_shrink_mm: float = 3.0  # keep this much unknown around such large structures
    line_mm: float = 80.0  # soft tissue holding a straight x/y/z segment this long: vessel, muscle (0: off)
    line_trim_mm: float = 6.0  # ends of such segments left unknown (a node may sit on a vessel)
    extras: dict = field(default_factory=dict)


@dataclass
class TrainingRecord:
    """Provenance of the run that made the weights; a key appears once the run has filled it."""

    iterations: int | None = None
    seed: int | None = None
    world_size: int | None = None
    data_fingerprint: str | None = None
    data: dict | None = None  # n_cases, case_ids, node_voxels, known_fraction
    naive: bool | None = None
    started: str | None = None
    completed_iterations: int | None = None
    finished: str | None = None
    final_loss_ema: float | None = None
    rank_weight_digests: list[str] | None = None
    extras: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Everything ``config.json`` says about a model besides its file format."""

    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    states: StatesConfig = field(default_factory=StatesConfig)
    naive: bool = False
    parent_version: str | None = None
    version: str | None = None
    training: TrainingRecord | None = None
    lnq_napari_version: str | None = None
    weights_sha256: str | None = None
    extras: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Read a config.json object; missing settings get the defaults, unknown keys go to ``extras``."""
        if not isinstance(data, dict):
            raise LNQError("a model config must be a JSON object; re-export the model")
        rest = {k: copy.deepcopy(v) for k, v in data.items() if k not in FILE_KEYS}
        sections = {"architecture": ArchitectureConfig, "preprocessing": PreprocessingConfig,
                    "inference": InferenceConfig, "train": TrainConfig, "states": StatesConfig}
        out = {name: _section(kind, rest.pop(name, None), name) for name, kind in sections.items()}
        if "training" in rest:
            out["training"] = _section(TrainingRecord, rest.pop("training"), "training")
        for f in fields(cls):
            if f.name not in out and f.name != "extras" and f.name in rest:
                out[f.name] = rest.pop(f.name)
        return cls(**out, extras=rest)

    def to_dict(self) -> dict:
        """The JSON object written to config.json (without the file format keys)."""
        out = {
            "architecture": _plain(self.architecture),
            "preprocessing": _plain(self.preprocessing),
            "inference": _plain(self.inference),
            "train": _plain(self.train),
            "states": _plain(self.states),
            "naive": self.naive,
        }
        for name in ("parent_version", "version"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.training is not None:
            out["training"] = _plain(self.training, skip_none=True)
        if self.lnq_napari_version is not None:
            out["lnq_napari_version"] = self.lnq_napari_version
        out.update(copy.deepcopy(self.extras))
        if self.weights_sha256 is not None:
            out["weights_sha256"] = self.weights_sha256
        return out

    def merged(self, overrides: dict | None) -> ModelConfig:
        """A copy with ``overrides`` (a partial config.json object) merged in section by section."""
        return ModelConfig.from_dict(merge(self.to_dict(), overrides))


def merge(base: dict, override: dict | None) -> dict:
    """``base`` with ``override`` merged in recursively (nested objects merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: Which weights a fine-tune trains: all, or only the normalisation layers and the first encoder block.
TRAINABLE = ("all", "norm_first")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_switch(text: str) -> bool | None:
    """``text`` as on (1, true, yes, on) or off (0, false, no, off), in any case; None for anything else."""
    low = text.strip().lower()
    return True if low in _TRUE else False if low in _FALSE else None


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of an active-learning fine-tune (:mod:`lnq_napari.finetuning`); the one place their defaults
    live. ``trainable`` is "norm_first" (only normalisation layers and the first block learn): in the
    adaptation ablation (``bench_adaptation.py --mode ablation``, one round of 5 click-corrected cases,
    one seed) it beat training all weights on both sites measured: habitus median Dice 0.844 vs 0.815,
    false nodes 0.67 vs 1.83 per case; nodes 0.791 vs 0.730, 0.83 vs 1.83, and no forgetting on the
    default site (0.933 vs 0.872). ``dense_truth``, ``distill_weight``, ``l2sp_weight``,
    ``interpolate`` and ``refit_postprocessing`` are off (none gained on top of it, or measured worse);
    ``replay_fraction`` 0.5 with ``replay_data`` None replays one uncorrected workspace case per
    training correction. ``mine_negatives`` is on: in three-round loops on four unseen sites (one seed)
    it left the user's model with 0.17 fewer false nodes per case on lowdose and noncontrast and the
    same figures on nodes and habitus (``docs/adaptation_history.md``, session 11). ``l2sp_weight`` 1 (toward
    the lineage's original) kept the default site within a point on 4 pools where 0 lost up to 1.4, but
    met the nodes site's targets on 1 pool of 3 instead of 3 (session 17), so it is offered, not the default.
    ``folds`` k >= 2 cross-fits the held-out figures: the corrected cases no version of the lineage trained
    on are split into k folds, a model trained without each fold judges it, and the version itself
    trains on every corrected case (k + 1 trainings: the rule sees every new case, not a fifth of them).
    ``forgetting_data`` (an LNQ-layout folder of the original model's own data) and ``forgetting_cases``
    set the activation rule's forgetting check (:mod:`lnq_napari.finetuning.forgetting`); with no folder a
    lineage that starts at the bundled model is checked on default-site phantoms, any other goes
    unchecked; ``forgetting_cases`` 0 turns the check off. ``fallback_steps`` n: when the check refuses a
    version the held-out figures would activate, the version moved back toward its parent (up to n steps of
    3/4, 1/2, 1/4, 1/8 of the way, from where the check's change is expected to meet its margin:
    :func:`~lnq_napari.finetuning.posttrain.step_alphas`) is judged again, check and held-out figures, and
    the first that passes both is registered instead (not with ``folds`` > 1: fold models judged the
    held-out cases).
    """

    iterations: int = 200
    lr: float = 1e-4  # a gentler schedule than training's
    warmup: int = 10
    focus_fraction: float = 0.5  # share of node-centred patches centred on what the reviewer changed
    seed: int = 0
    val_fraction: float = 0.2  # share of corrected cases held out for the activation rule (folds=1)
    folds: int = 1  # >= 2: cross-fit; every corrected case new to the lineage is judged by a fold model
    dense_truth: bool = False  # a correction is complete: its mask is node, all else known background
    replay_fraction: float = 0.5  # share of each batch drawn from replay cases (0: no replay)
    replay_data: str | None = None  # LNQ-layout folder to replay instead of the workspace's other cases
    distill_weight: float = 0.0  # BCE toward the parent's probabilities outside the edited voxels
    l2sp_weight: float = 0.0  # penalty on ||w - w_original||^2, the lineage's root (weight decay is then 0)
    trainable: str = "norm_first"  # "norm_first" | "all"
    interpolate: bool = False  # pick alpha of (1-alpha) w_parent + alpha w_ft on the validation cases
    refit_postprocessing: bool = False  # re-fit threshold and min component size on the training corrections
    mine_negatives: bool = True  # half-way: the model's own components on no corrected node -> background
    forgetting_data: str | None = None  # LNQ-layout folder of the original model's own data to check
    forgetting_cases: int = 4  # cases the forgetting check scores (0: no check)
    fallback_steps: int = 3  # after a check refusal: steps toward the parent (alpha 3/4 ... 1/8; 0: none)

    def __post_init__(self) -> None:
        problems = []
        whole = ("iterations", "warmup", "forgetting_cases", "fallback_steps", "folds", "seed")
        for name in whole:  # 2.7 iterations ran 2 without a word; 200.0 or 1e3 are whole numbers
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():
                object.__setattr__(self, name, int(value))
            elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
                problems.append(f"{name} must be a whole number (got {value!r})")
        if problems:
            raise LNQError(f"bad fine-tune setting: {'; '.join(problems)}")
        if self.iterations < 1:
            problems.append(f"iterations must be >= 1 (got {self.iterations})")
        for name in ("val_fraction", "replay_fraction", "focus_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be within 0..1 (got {getattr(self, name)})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be a number > 0 (got {self.lr})")
        for name in ("distill_weight", "l2sp_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                problems.append(f"{name} must be a number >= 0 (got {getattr(self, name)})")
        for name in ("warmup", "forgetting_cases", "fallback_steps"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        if self.folds < 1:
            problems.append(f"folds must be >= 1 (got {self.folds})")
        if not 0 <= self.seed < 2**32:  # numpy's generators refuse negatives, torch's seed overflows
            problems.append(f"seed must be a whole number from 0 to {2**32 - 1} (got {self.seed})")
        if self.folds > 1 and (self.interpolate or self.refit_postprocessing):
            problems.append("folds > 1 cannot go with interpolate or refit_postprocessing (both are chosen "
                            "on cases the cross-fitted version trains on); use folds=1 for them")
        if self.trainable not in TRAINABLE:
            problems.append(f"trainable must be one of {', '.join(TRAINABLE)} (got {self.trainable!r})")
        if problems:
            raise LNQError(f"bad fine-tune setting: {'; '.join(problems)}")

    @classmethod
    def setting_names(cls) -> list[str]:
        """The names of the settings (for ``--set KEY=VALUE``)."""
        return [f.name for f in fields(cls)]

    def replace(self, **changes) -> FinetuneConfig:
        """A copy with ``changes`` (checked as a new config)."""
        return dataclasses.replace(self, **changes)

    def with_settings(self, settings: Sequence[str]) -> FinetuneConfig:
        """A copy with ``KEY=VALUE`` settings, each parsed by its field's type (LNQError naming the keys)."""
        hints = typing.get_type_hints(FinetuneConfig)
        changes = {}
        for item in settings:
            key, sep, text = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep and key in hints:
                raise LNQError(f"fine-tune setting {key} has no value; use KEY=VALUE, e.g. --set "
                               f"{key}={_example(_base(hints[key]))}")
            if not sep or key not in hints:
                raise LNQError(f"unknown fine-tune setting {item!r}; use KEY=VALUE with KEY one of "
                               f"{', '.join(self.setting_names())}")
            changes[key] = _parse(key, text.strip(), hints[key])
        return self.replace(**changes)


def _parse(key: str, text: str, kind) -> Any:
    """``text`` as a value of type ``kind`` (bool, int, float, str or str | None)."""
    if type(None) in typing.get_args(kind) and text.lower() in ("", "none", "null"):
        return None
    base = _base(kind)
    try:
        if base is bool:
            if (switch := parse_switch(text)) is None:
                raise ValueError(text)
            return switch
        return base(text)
    except ValueError:
        raise LNQError(f"bad value {text!r} for fine-tune setting {key} (a {base.__name__}); "
                       f"e.g. --set {key}={_example(base)}") from None


def _base(kind):
    """The type of a setting's values (``str`` for ``str | None``)."""
    return next((k for k in typing.get_args(kind) if k is not type(None)), kind)


def _example(base) -> str:
    return {bool: "true", int: "200", float: "0.5"}.get(base, "text")
