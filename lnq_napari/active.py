"""What to review next: uncertainty scores from the model's probability map, and ranking strategies.

Scores come from the probability map the Predictor already computes, so ranking a case costs one
prediction (no extra passes). Per voxel we take the binary entropy ``H(p)`` in bits; per node we take
the connected components of ``p >= 0.2`` and call a node *uncertain* when its peak probability lies in
``[0.2, 0.8)`` (the model half-sees it: a likely miss or a likely false node). The case score is the
sum over components of ``1 - |2 * peak - 1|`` (each component counts by how close its peak is to 0.5)
plus the entropy volume in cm3 of the uncertain band ``0.1 <= p <= 0.9``, which grows with unsure
boundaries. Optional flip test-time augmentation (``flips``) adds ``disagreement``: the fraction of the
union of the flipped masks on which they disagree (1 - mean pairwise Dice); it costs one prediction
per flip, which is why it is off unless the ``disagreement`` strategy asks for it.

A model can also be sure and wrong about a node's extent: it outlines half a node and stops. Such
outlines are found from the CT instead (:func:`incomplete_outlines`): each predicted node is grown from
its centre with the region growing a positive click uses, and a node whose grown tissue reaches well
beyond its outline is flagged *incomplete*; the tissue outside (cm3) adds to the case score.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
from scipy import ndimage

from lnq_napari.components import label_components, node_numbers
from lnq_napari.ct_scale import scale_problem
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.interact import Suggestion, equivalent_diameter, interior_point, node_region_from_click
from lnq_napari.io.volume import Volume
from lnq_napari.per_ct import kept_per_ct

LOW, HIGH = 0.2, 0.8  # peak probability band of an uncertain node
BAND = (0.1, 0.9)  # voxel band counted in the uncertain volume
OUTLINE_RATIO = 0.5  # grown tissue outside a node's outline, per voxel inside it, that flags it incomplete


@dataclass
class CaseScore:
    """Review-worthiness of one case under one model version."""

    case: str
    score: float
    uncertain_nodes: int = 0
    predicted_nodes: int = 0
    node_uncertainty: float = 0.0
    entropy_cm3: float = 0.0
    uncertain_cm3: float = 0.0
    disagreement: float | None = None
    incomplete_nodes: int = 0
    outline_cm3: float = 0.0
    model_version: str | None = None
    nodes: list[dict] = field(default_factory=list, repr=False)  # long: a notebook shows the rest

    def to_dict(self) -> dict:
        """The row as a dict, fields in order (a DataFrame row, a printed table)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CaseScore:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class RankedCase:
    """One row of the review queue: a case's rank under a strategy and its score figures."""

    rank: int
    case: str
    score: float  # rounded to 4 decimals
    uncertain_nodes: int = 0
    predicted_nodes: int = 0
    incomplete_nodes: int = 0
    disagreement: float | None = None
    model_version: str | None = None
    nodes: list[dict] = field(default_factory=list, repr=False)  # long: a notebook shows the rest

    def to_dict(self) -> dict:
        """The row as a dict, fields in order (a DataFrame row, a printed table)."""
        return asdict(self)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of a Bernoulli(p), elementwise (float32)."""
    p = np.clip(np.asarray(p, dtype=np.float32), 1e-6, 1 - 1e-6)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def node_scores(probabilities: Volume, low: float = LOW, high: float = HIGH) -> list[dict]:
    """Connected components of ``p >= low`` with peak, mean probability, size and centre (z, y, x); ids
    1..n in LPS raster order by the rule node ids follow (:func:`~lnq_napari.components.node_numbers`),
    but of these probability blobs, not the node table's ids (a blob may hold several nodes or none)."""
    p = np.asarray(probabilities.array, dtype=np.float32)
    components, found = node_numbers(p >= low, grid=probabilities)
    n = found.size
    if n == 0:
        return []
    # per-component figures from the component voxels alone (scipy's per-label reductions sort the whole
    # volume: ~7 s of a full-size CT's ranking on the CPU, against well under one here)
    where = np.nonzero(components)
    ids, values = components[where], p[where]
    sizes = np.bincount(ids, minlength=n + 1)[1:]
    means = np.bincount(ids, weights=values, minlength=n + 1)[1:] / sizes
    peaks = np.zeros(n + 1, np.float32)
    np.maximum.at(peaks, ids, values)
    peaks = peaks[1:]
    centres = np.stack([np.bincount(ids, weights=axis, minlength=n + 1)[1:] / sizes
                        for axis in where], axis=1)
    voxel_mm3 = float(np.prod(probabilities.spacing))
    rows = []
    for i in range(n):
        peak = float(peaks[i])
        rows.append({
            "id": i + 1, "peak": peak, "mean": float(means[i]), "voxels": int(sizes[i]),
            "volume_mm3": float(sizes[i]) * voxel_mm3,
            "centre_zyx": [round(float(c), 1) for c in centres[i]],
            "uncertainty": 1.0 - abs(2.0 * peak - 1.0), "uncertain": bool(low <= peak < high),
        })
    return rows


def mask_disagreement(masks: Sequence[np.ndarray]) -> float:
    """1 - mean pairwise Dice of binary masks (0 when all agree, also when all are empty)."""
    masks = [np.asarray(m) > 0 for m in masks]
    dices = []
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            total = masks[i].sum() + masks[j].sum()
            dices.append(1.0 if total == 0 else 2.0 * np.logical_and(masks[i], masks[j]).sum() / total)
    return float(1.0 - np.mean(dices)) if dices else 0.0


def score_probabilities(
    case: str, probabilities: Volume, model_version: str | None = None,
    tta_probabilities: Sequence[np.ndarray] = (), mask: Volume | None = None,
) -> CaseScore:
    """Score one case from its probability map (and optional flip-TTA maps on the same grid); its
    ``predicted_nodes`` are the nodes of the post-processed ``mask`` when given (what the case opens
    with), else the components whose peak reaches 0.5."""
    p = np.asarray(probabilities.array, dtype=np.float32)
    voxel_cm3 = float(np.prod(probabilities.spacing)) / 1000.0
    band = (p >= BAND[0]) & (p <= BAND[1])
    entropy = binary_entropy(p[band]) if band.any() else np.zeros(0, np.float32)
    nodes = node_scores(probabilities)
    node_unc = float(sum(n["uncertainty"] for n in nodes))
    entropy_cm3 = float(entropy.sum()) * voxel_cm3
    disagreement = None
    if len(tta_probabilities):
        disagreement = mask_disagreement([p >= 0.5] + [np.asarray(t) >= 0.5 for t in tta_probabilities])
    return CaseScore(
        case=case, score=node_unc + entropy_cm3,
        uncertain_nodes=int(sum(n["uncertain"] for n in nodes)),
        predicted_nodes=int(sum(n["peak"] >= 0.5 for n in nodes)) if mask is None
        else label_components(np.asarray(mask.array) > 0)[1],
        node_uncertainty=node_unc, entropy_cm3=entropy_cm3,
        uncertain_cm3=float(band.sum()) * voxel_cm3, disagreement=disagreement,
        model_version=model_version,
        nodes=[n for n in nodes if n["uncertain"]],
    )


def incomplete_outlines(ct: Volume, mask: Volume, ratio: float = OUTLINE_RATIO) -> list[dict]:
    """Predicted nodes whose tissue reaches well beyond their outline (a likely truncated node).

    Each component of ``mask`` is grown from its deepest voxel by
    :func:`lnq_napari.interact.node_region_from_click` (what a positive click there would add); a node
    is flagged when the grown region holds at least ``ratio`` times the node's volume outside the
    mask. Rows (flagged nodes only): ``id, centre_zyx, click_zyx`` (the middle of the missing tissue:
    a positive click there completes the node), ``volume_mm3, outside_mm3, ratio, incomplete``.
    ``mask``'s nodes are those of the node table (:func:`~lnq_napari.components.node_numbers`: a 0/1
    mask's connected blobs, or one id per node as :func:`lnq_napari.api.find_nodes` labels it, taken as
    it is), each row with its node's id.
    """
    array = np.asarray(mask.array)
    components, ids = node_numbers(array, grid=mask)
    voxel_mm3 = float(np.prod(ct.spacing))
    rows = []
    for i, sl in enumerate(ndimage.find_objects(components), start=1):
        if sl is None:
            continue
        node = components[sl] == i
        centre = tuple(int(c + s.start) for c, s in zip(interior_point(node, mask), sl, strict=True))
        box, grown = node_region_from_click(ct, centre)
        missing = grown & (array[box] <= 0)
        outside = int(missing.sum())
        size = int(node.sum())
        if outside >= ratio * size:
            click = [float(c + b.start) for c, b in zip(interior_point(missing, ct), box, strict=True)]
            rows.append({"id": int(ids[i - 1]), "centre_zyx": [float(c) for c in centre], "click_zyx": click,
                         "volume_mm3": size * voxel_mm3, "outside_mm3": outside * voxel_mm3,
                         "ratio": outside / size, "incomplete": True})
    return rows


def outline_suggestions(ct: Volume, mask: Volume, probabilities: Volume | None = None) -> list[Suggestion]:
    """Incomplete outlines as suggestions (``kind`` "outline") at the middle of the missing tissue;
    score = the equivalent diameter (mm) of that tissue."""
    prob = None if probabilities is None else np.asarray(probabilities.array)
    voxel_mm3 = float(np.prod(ct.spacing))
    rows = []
    for r in incomplete_outlines(ct, mask):
        click = np.array(r["click_zyx"])
        index = tuple(int(round(c)) for c in click)
        vol = r["outside_mm3"]
        centre_mm = tuple(float(v) for v in ct.index_to_physical(click)[0])
        rows.append(Suggestion(
            kind="outline", centre_zyx=index, centre_mm=centre_mm,
            score=equivalent_diameter(vol), max_prob=float(prob[index]) if prob is not None else 0.0,
            mean_prob=math.nan, uncertain=True, voxels=int(round(vol / voxel_mm3)), volume_mm3=vol,
            node_volume_mm3=r["volume_mm3"],
        ))
    return rows


def add_outlines(score: CaseScore, outlines: list[dict]) -> CaseScore:
    """``score`` with the incomplete outlines counted: their outside tissue (cm3) adds to the score."""
    outline_cm3 = sum(r["outside_mm3"] for r in outlines) / 1000.0
    score.incomplete_nodes = len(outlines)
    score.outline_cm3 = outline_cm3
    score.score += outline_cm3
    score.nodes = list(score.nodes) + outlines
    return score


def flipped(volume: Volume, axes: Sequence[int]) -> Volume:
    """``volume`` with its array flipped along ``axes`` (array axes z=0, y=1, x=2), grid unchanged."""
    return volume.with_array(np.ascontiguousarray(np.flip(volume.array, axis=tuple(axes))))


def predict_with_flips(
    predictor, ct: Volume, flips: Sequence[Sequence[int]] = (),
    progress: Callable[[float, str], None] | None = None, cancel: Callable[[], bool] | None = None,
):
    """Predict ``ct`` and each flipped copy; returns (prediction, [flip probabilities unflipped back])."""
    steps = 1 + len(flips)

    def sub(k: int):
        if progress is None:
            return None
        return lambda f, m="": progress((k + f) / steps, m)

    prediction = predictor.predict(ct, progress=sub(0), cancel=cancel)
    extra = []
    for k, axes in enumerate(flips, start=1):
        if cancel is not None and cancel():
            raise Cancelled("ranking cancelled")
        pred = predictor.predict(flipped(ct, axes), progress=sub(k), cancel=cancel)
        extra.append(np.flip(np.asarray(pred.probabilities.array), axis=tuple(axes)))
    return prediction, extra


# ---------------------------------------------------------------- strategies
class Strategy(Protocol):
    """Orders cases for review."""

    name: str
    needs_flips: bool

    def rank(self, scores: dict[str, CaseScore], n: int) -> list[str]:
        """The ``n`` case ids to review first, best first."""
        ...


def _nan_low(value: float | None) -> float:
    return -math.inf if value is None or (isinstance(value, float) and math.isnan(value)) else value


class UncertaintyStrategy:
    """Highest uncertainty score first (ties: more uncertain nodes, then case id)."""

    name = "uncertainty"
    needs_flips = False

    def rank(self, scores: dict[str, CaseScore], n: int) -> list[str]:
        order = sorted(scores, key=lambda c: (-_nan_low(scores[c].score), -scores[c].uncertain_nodes, c))
        return order[: max(n, 0)]


class RandomStrategy:
    """A seeded random order (the baseline active learning must beat)."""

    name = "random"
    needs_flips = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def rank(self, scores: dict[str, CaseScore], n: int) -> list[str]:
        ids = sorted(scores)
        rng = np.random.default_rng(self.seed)
        return [ids[i] for i in rng.permutation(len(ids))][: max(n, 0)]


class DisagreementStrategy:
    """Largest flip-TTA disagreement first; the uncertainty score breaks ties and stands in when absent."""

    name = "disagreement"
    needs_flips = True

    def rank(self, scores: dict[str, CaseScore], n: int) -> list[str]:
        def key(c: str) -> tuple:
            return (-_nan_low(scores[c].disagreement), -_nan_low(scores[c].score), c)

        order = sorted(scores, key=key)
        return order[: max(n, 0)]


class UncertainNodesStrategy:
    """Most uncertain nodes first (what a reviewer clicks through fastest), then the score."""

    name = "nodes"
    needs_flips = False

    def rank(self, scores: dict[str, CaseScore], n: int) -> list[str]:
        order = sorted(scores, key=lambda c: (-scores[c].uncertain_nodes, -_nan_low(scores[c].score), c))
        return order[: max(n, 0)]


STRATEGIES = {
    "uncertainty": UncertaintyStrategy, "random": RandomStrategy,
    "disagreement": DisagreementStrategy, "nodes": UncertainNodesStrategy,
}


def get_strategy(name: str, seed: int = 0) -> Strategy:
    """A strategy by name: uncertainty, random, disagreement or nodes."""
    if name not in STRATEGIES:
        raise LNQError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}")
    return RandomStrategy(seed) if name == "random" else STRATEGIES[name]()


def ranked_rows(scores: dict[str, CaseScore], strategy: Strategy, n: int) -> list[RankedCase]:
    """The queue rows for the CLI and the widgets, best first."""
    rows = []
    for i, case in enumerate(strategy.rank(scores, n), start=1):
        s = scores[case]
        rows.append(RankedCase(
            rank=i, case=case, score=round(float(s.score), 4), uncertain_nodes=s.uncertain_nodes,
            predicted_nodes=s.predicted_nodes, incomplete_nodes=s.incomplete_nodes,
            disagreement=s.disagreement, model_version=s.model_version, nodes=s.nodes,
        ))
    return rows


# ---------------------------------------------------------------- workspace glue
class LazyPredictor:
    """Builds the predictor on first use, so a fully cached ranking never loads the model (or torch)."""

    def __init__(self, factory: Callable[[], object]) -> None:
        self._factory = factory
        self._predictor = None

    def load(self):
        """The predictor, built now if not yet (a model that cannot be loaded fails here, not per case)."""
        if self._predictor is None:
            self._predictor = self._factory()
        return self._predictor

    def predict(self, ct: Volume, progress=None, cancel=None):
        return self.load().predict(ct, progress=progress, cancel=cancel)


def _latest_correction(ws, case: str) -> str | None:
    """The id of ``case``'s newest correction (None: never corrected)."""
    return (ws.latest_version(case, "correction") or {}).get("version")


RANKING_WRITES = ("ranking stores its scores and each case's prediction (the version a reviewer corrects) "
                  "there")


def score_workspace(
    ws, predictor, model_key: str, cases: Sequence[str] | None = None, flips: Sequence[Sequence[int]] = (),
    store_predictions: bool = True, progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, CaseScore]:
    """Score ``cases`` (default: all not yet corrected) with ``predictor``, cached per model version.

    Each case's score is written to ``cache/scores-<model_key>.json`` as soon as it is known, so an
    interrupted ranking resumes where it stopped. With ``store_predictions`` the predicted mask becomes
    a ``prediction`` label version (parent of the correction the reviewer will make); the case folders
    it stores them in (of the cases not scored yet) are checked writable before the first prediction.
    """
    if cases is None:
        corrected = set(ws.corrected_cases())
        cases = [c for c in ws.case_ids() if c not in corrected]
    cache_name = f"scores-{model_key}.json"
    cache = ws.read_cache(cache_name)
    scores: dict[str, CaseScore] = {}
    todo = []
    for case in cases:
        cached = cache.get(case)
        if cached is not None and (not flips or cached.get("disagreement") is not None):
            scores[case] = CaseScore.from_dict(cached)
        else:
            todo.append(case)
    if store_predictions and todo:  # before the first prediction: none stored, then a refusal
        ws.check_writable(RANKING_WRITES, *(ws.labels_dir / case for case in todo))
    corrections = {case: _latest_correction(ws, case) for case in todo}
    with kept_per_ct(ws.cache):  # each case's region read from the workspace once a model drew it
        for k, case in enumerate(todo):
            if cancel is not None and cancel():
                raise Cancelled("ranking cancelled")

            def sub(f: float, m: str = "", k: int = k, case: str = case) -> None:
                if progress is not None:
                    progress((k + f) / len(todo), f"{case}: {m}" if m else case)

            try:
                ct = ws.read_ct(case)
            except LNQError as exc:  # one case's missing or damaged CT does not hold up the others
                warnings.warn(f"{exc}; {case} left out of the ranking", UserWarning, stacklevel=2)
                continue
            model = predictor.load() if isinstance(predictor, LazyPredictor) else predictor  # fails for all
            try:
                prediction, extra = predict_with_flips(model, ct, flips, progress=sub, cancel=cancel)
            except LNQError as exc:  # nor does a CT that cannot be predicted (not in HU, a label map, ...)
                warnings.warn(f"{exc}; {case} left out of the ranking", UserWarning, stacklevel=2)
                continue
            off_scale = scale_problem(ct)  # ranked, with a warning naming the case
            if off_scale:
                warnings.warn(f"{case}: {off_scale}", UserWarning, stacklevel=2)
            score = add_outlines(score_probabilities(case, prediction.probabilities, model_key, extra,
                                                     prediction.mask),
                                 incomplete_outlines(ct, prediction.mask))
            if _latest_correction(ws, case) != corrections[case]:
                continue  # corrected while it was predicted: reviewed, and no prediction goes on top of it
            if store_predictions:
                stored = ws.latest_version(case, "prediction")
                if stored is None or stored.get("model_version") != model_key:
                    stored = {"version": ws.add_label_version(case, prediction.mask, "prediction",
                                                              model_version=model_key)}
                score.nodes = [dict(n, prediction_version=stored["version"]) for n in score.nodes]
            scores[case] = score
            ws.update_cache(cache_name, {case: score.to_dict()})  # merged under the lock (other processes)
    if progress is not None:
        progress(1.0, f"{len(scores)} cases scored")
    return scores
