"""What every prediction of one CT computes the same way (its preprocessing, its mediastinum region),
kept while a :func:`kept_per_ct` block runs: a fine-tune predicts its held-out and check cases with the
candidate and again with each step back, and each CT's share is computed once.

Outside such a block nothing is kept. Inside it, CTs are told apart by their voxels and grid
(:func:`~lnq_napari.io.volume.volumes_digest`), never by the object that holds them; a region is kept
packed (one bit a voxel) and each caller gets its own copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from lnq_napari.io.volume import Volume, volumes_digest
from lnq_napari.preprocess import Prepared, mediastinum_region, prepare

_KEPT: ContextVar[dict | None] = ContextVar("lnq_kept_per_ct", default=None)


@contextmanager
def kept_per_ct() -> Iterator[None]:
    """Keep each CT's preprocessing and mediastinum region for the predictions made in this block."""
    token = _KEPT.set({})
    try:
        yield
    finally:
        _KEPT.reset(token)


def _key(kind: str, ct: Volume, settings) -> tuple[str, str, str] | None:
    kept = _KEPT.get()
    if kept is None:
        return None
    return kind, volumes_digest(ct), json.dumps(settings, sort_keys=True, default=str)


def prepared_ct(ct: Volume, prep: dict) -> Prepared:
    """:func:`~lnq_napari.preprocess.prepare` of ``ct`` (no labels), kept in a :func:`kept_per_ct` block
    (its arrays read-only)."""
    key = _key("prepared", ct, prep)
    if key is None:
        return prepare(ct, prep)
    kept = _KEPT.get()
    if key not in kept:
        prepared = prepare(ct, prep)
        prepared.image.setflags(write=False)
        kept[key] = prepared
    return kept[key]


def region_of(ct: Volume, margin_mm: float) -> np.ndarray:
    """:func:`~lnq_napari.preprocess.mediastinum_region` of ``ct``, kept packed in a :func:`kept_per_ct`
    block; a fresh array for each caller."""
    key = _key("region", ct, float(margin_mm))
    if key is None:
        return mediastinum_region(ct, float(margin_mm))
    kept = _KEPT.get()
    if key not in kept:
        kept[key] = np.packbits(mediastinum_region(ct, float(margin_mm)))
    size = int(np.prod(ct.shape))
    return np.unpackbits(kept[key], count=size).view(bool).reshape(ct.shape)
