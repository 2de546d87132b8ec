"""Shared steps of the active-learning benchmarks: choose cases, review them, cache frozen predictions.

Used by ``bench_active_learning.py`` (in-distribution) and ``bench_adaptation.py`` (shifted sites).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lnq_napari import active
from lnq_napari.inference import Prediction, postprocess_as
from lnq_napari.io.atomic import atomic_write
from lnq_napari.io.readers import read_labels
from lnq_napari.io.volume import Volume
from lnq_napari.simulate import provenance, simulate_review


class CachedPredictor:
    """A predictor whose results are kept under ``folder`` by CT content, so reruns skip prediction.

    Only for a model that never changes (the frozen starting model). Probabilities are stored as
    float16, the mask as uint8, compressed. With ``inference`` (the model's settings) a cached mask is
    made again from the cached probabilities by today's post-processing
    (:func:`lnq_napari.inference.postprocess_as`), so a change there reaches cached predictions.
    """

    def __init__(self, factory, folder: str | Path, inference=None) -> None:
        self.inner = active.LazyPredictor(factory)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.inference = inference

    def predict(self, ct, progress=None, cancel=None):
        key = hashlib.sha1(np.ascontiguousarray(ct.array).tobytes()).hexdigest()[:20]
        path = self.folder / f"{key}.npz"
        grid = {"spacing": ct.spacing, "origin": ct.origin, "direction": ct.direction}
        if not path.is_file():
            pred = self.inner.predict(ct, progress=progress, cancel=cancel)
            region = np.zeros(0, bool) if pred.region is None else np.asarray(pred.region, bool)
            with atomic_write(path) as tmp:  # two loops may fill one cache at once
                np.savez_compressed(tmp, probabilities=pred.probabilities.array.astype(np.float16),
                                    mask=np.asarray(pred.mask.array, np.uint8), version=pred.model_version,
                                    region=region)
        # a fresh prediction is read back too: the first run of a loop must see the float16 probabilities
        # every later run sees (the simulated reviewer grows its clicks on them)
        with np.load(path) as data:
            region = data["region"] if data["region"].shape == ct.shape else None  # (0,): none
            prob = data["probabilities"].astype(np.float32)
            mask = (data["mask"] if self.inference is None
                    else postprocess_as(self.inference, prob, ct, region))
            return Prediction(Volume(prob, **grid), Volume(mask, **grid), str(data["version"]), region)


def choose_cases(ws, strategy: str, predictor, model_id: str, n: int, seed: int) -> tuple[list[str], dict]:
    """The ``n`` unreviewed cases ``strategy`` picks, and the scores it ranked (empty for random).

    Random predicts only the drawn cases (their predictions become the corrections' parents).
    """
    corrected = set(ws.corrected_cases())
    candidates = [c for c in ws.case_ids() if c not in corrected]
    if strategy == "random":
        chosen = active.RandomStrategy(seed).rank({c: active.CaseScore(c, 0.0) for c in candidates}, n)
        active.score_workspace(ws, predictor, model_id, cases=chosen)
        return chosen, {}
    ranker = active.get_strategy(strategy, seed=seed)
    scores = active.score_workspace(ws, predictor, model_id, cases=candidates,
                                    flips=[(2,)] if ranker.needs_flips else [])
    return ranker.rank(scores, n), scores


BRUSH_MM = 2.0  # a brush stroke erases an outline's spill this far from the node: not voxel-exact


def review_cases(ws, cases: list[str], model_id: str, corrections: str = "clicks",
                 suggest: Callable[[Volume], list] | None = None) -> int:
    """Save a correction of each case's latest prediction; returns the number of clicks.

    ``corrections``: "truth" (the complete phantom truth saved as the correction: the ceiling of any
    review), "brush" (the simulated reviewer's clicks, then a brush stroke erasing each outline's spill
    farther than :data:`BRUSH_MM` from the truth node), else the simulated reviewer's clicks
    (:func:`lnq_napari.simulate.simulate_review`).
    ``suggest(ct)``: the suggestions the reviewer is shown (what napari's Segment panel lists); the
    reviewer rejects those on no node, and the rejections (and the nodes it marked with an unknown
    outline) are saved with the correction.
    """
    clicks = 0
    for case in cases:
        prov = ws.latest_version(case, "prediction")
        ct = ws.read_ct(case)
        full = read_labels(ws.full_path(case), reference=ct)
        if corrections == "truth":
            corrected, saved = full, {"edits": 0}
        else:
            shown = suggest(ct) if suggest is not None else []
            corrected, stats = simulate_review(ct, ws.read_labels(case, prov["version"]), full,
                                               suggestions=shown,
                                               brush_mm=BRUSH_MM if corrections == "brush" else None)
            saved = provenance(stats)
        clicks += saved["edits"]
        ws.add_label_version(case, corrected, "correction", model_version=model_id, parent=prov["version"],
                             **saved)
    return clicks


def suggester(predictor, model_path) -> Callable[[Volume], list]:
    """``suggest(ct)`` for :func:`review_cases`: the ranked suggestions of ``model_path``'s model, as
    napari shows them (:func:`lnq_napari.api.nodes_of_prediction`)."""
    from lnq_napari.api import nodes_of_prediction
    from lnq_napari.model.checkpoint import read_config

    inference = read_config(model_path).inference
    return lambda ct: nodes_of_prediction(ct, predictor.predict(ct), inference).suggestions


def bootstrap_median(values, confidence: float = 0.9, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values`` (resampling cases)."""
    v = np.asarray([x for x in values if math.isfinite(x)], float)
    if v.size == 0:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, v.size, size=(n, v.size))
    medians = np.median(v[idx], axis=1)
    tail = 50 * (1 - confidence)
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))
