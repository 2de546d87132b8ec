"""A reviewed case as a fine-tune reads it from the workspace: the correction, the prediction it
descends from, the suggestions the reviewer rejected, the nodes marked with an unknown outline, and the
label states they give (what training
learns from and what the held-out figures are judged on), and the known background of a CT, kept
in the workspace cache (the CT part of label states: most of their cost, the same in every round)."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from lnq_napari.interact import NodeMark, Rejection, read_spots, spot_mask, unreadable_entries
from lnq_napari.io.geometry import check_same_grid
from lnq_napari.io.volume import Volume, volumes_digest
from lnq_napari.model.config import StatesConfig
from lnq_napari.per_ct import region_code
from lnq_napari.training import labels as training_labels
from lnq_napari.training.corrections import correction_states
from lnq_napari.training.labels import ct_background, states_options
from lnq_napari.workspace.labels import marks_lost


def known_background(ws, ct: Volume, options: StatesConfig | None = None) -> np.ndarray:
    """:func:`~lnq_napari.training.labels.ct_background` of ``ct``, read from the workspace cache when
    this CT (voxels and grid) was seen with these options and this code (a new release's background is
    drawn again), else computed and cached."""
    key = hashlib.sha1(volumes_digest(ct).encode())  # the CT's grid and voxels, their type, the options
    key.update(region_code(training_labels).encode())  # and the code that drew it
    settings = asdict(states_options(options))
    settings.update(settings.pop("extras"))  # flat, as the options were always keyed
    key.update(json.dumps(settings, sort_keys=True).encode())
    name = f"background-{key.hexdigest()[:24]}.npz"
    mask = ws.cache.read_mask(name)
    if mask is None or mask.shape != ct.shape:
        mask = ct_background(ct, options)
        ws.cache.write_mask(name, mask)
    return mask


def prediction_parent(ws, case: str, correction: dict) -> dict | None:
    """The prediction version a correction descends from (via its parent chain), else the latest one
    numbered below it (a number is taken when a save starts: a prediction stored while the correction was
    written, in the same second, is numbered above it and was never seen by the reviewer)."""
    by_id = {v["version"]: v for v in ws.versions(case)}
    seen = set()
    parent = correction.get("parent")
    while parent and parent in by_id and parent not in seen:
        seen.add(parent)
        if by_id[parent]["source"] == "prediction":
            return by_id[parent]
        parent = by_id[parent].get("parent")
    number = _number(correction["version"])
    earlier = [v for v in by_id.values() if v["source"] == "prediction" and _number(v["version"]) < number]
    return earlier[-1] if earlier else None


def _number(version: str) -> int:
    """``v012`` -> 12."""
    return int(version.lstrip("v"))


@dataclass
class ReviewedCase:
    """One corrected case: CT, correction, the prediction it corrected (None if unknown) and the balls of
    the rejected suggestions (None if none), and the reviewer's "node here, outline unknown" marks (or
    whether they were lost: :func:`marks_lost`)."""

    case_id: str
    ct: Volume
    correction: Volume
    prediction: Volume | None
    rejected: np.ndarray | None
    marks: tuple[NodeMark, ...] = ()
    marks_lost: bool = False

    def states(self, background: np.ndarray | None = None) -> np.ndarray:
        """int8 label states: the correction's nodes 1, removed components, rejected balls and what the
        CT rules out 0 (``background``: :func:`known_background`, computed when None), marked nodes
        unknown around a core of 1, the rest unknown (-1); with the marks lost (``marks_lost``) what was
        removed stays unknown."""
        return correction_states(self.ct, self.correction, self.prediction, rejected=self.rejected,
                                 background=background, marks=self.marks, marks_lost=self.marks_lost)


def rejections_of(info: dict) -> tuple[Rejection, ...]:
    """The suggestions rejected with a correction (provenance ``rejected``)."""
    return _spots(info, "rejected", Rejection)


def marks_of(info: dict) -> tuple[NodeMark, ...]:
    """The "node here, outline unknown" marks kept with a correction (provenance ``marked``)."""
    return _spots(info, "marked", NodeMark)


def _spots(info: dict, key: str, kind: type) -> tuple:
    """The entries of list ``key`` of a provenance that read as ``kind``; one that does not (edited by hand)
    is dropped with a warning, as napari and repair drop it (a dropped mark makes the marks lost:
    :func:`marks_lost`)."""
    kept, bad = read_spots(kind, info.get(key) or [])
    if bad:
        what, then = (("marked nodes", "dropped and taken as lost marks (nothing removed is taught as "
                       "background); open the case in napari and mark those nodes again") if key == "marked"
                      else ("rejected suggestions", "dropped"))
        where = f"{info.get('version')}.json"
        warnings.warn(f"case {info.get('case')}: {unreadable_entries(bad, what, where)}: {then}", UserWarning,
                      stacklevel=3)
    return tuple(kept)


def labels_on_ct(ws, case: str, version: str, ct: Volume) -> Volume:
    """Label ``version`` of ``case``, checked to lie on the grid of its CT as read now (``ct``)."""
    labels = ws.read_labels(case, version)
    check_same_grid(ct, labels, what=f"case {case}'s labels {version} and its CT",
                    fix="the CT file was replaced after the labels were saved: put the original CT back, "
                        "or correct the case again on the new CT")
    return labels


def read_reviewed(ws, case: str, version: str, prediction: str | None = None) -> ReviewedCase:
    """The correction ``version`` of ``case`` with what it was made from (``prediction``: the version it
    corrected, found from the correction's parent chain when None)."""
    ct = ws.read_ct(case)
    info = ws.version_info(case, version)
    if prediction is None:
        found = prediction_parent(ws, case, info)
        prediction = None if found is None else found["version"]
    rejections = rejections_of(info)
    return ReviewedCase(
        case, ct, labels_on_ct(ws, case, version, ct),
        None if prediction is None else ws.read_labels(case, prediction),
        spot_mask(rejections, ct.shape, ct.spacing_zyx) if rejections else None, marks_of(info),
        marks_lost(info))
