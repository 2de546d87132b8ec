"""What every prediction of one CT computes the same way (its preprocessing, its mediastinum region),
kept while a :func:`kept_per_ct` block runs: a fine-tune predicts its held-out and check cases with the
candidate and again with each step back, and a workspace's cases are predicted again each round.

Outside such a block nothing is kept. Inside it, CTs are told apart by their voxels and grid
(:func:`~lnq_napari.io.volume.volumes_digest`), never by the object that holds them; a region is kept
packed (one bit a voxel), each caller gets its own copy, and given a mask store (a workspace's cache)
regions are also saved there, named by the CT, the margin and the code that draws them, for later runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

from lnq_napari import anatomy, components
from lnq_napari.anatomy import mediastinum_region
from lnq_napari.io import orientation
from lnq_napari.io.volume import Volume, volumes_digest
from lnq_napari.preprocess import Prepared, PreprocessingConfig, prepare


class MaskStore(Protocol):
    """Where masks outlive a run (:class:`~lnq_napari.workspace.cache.Cache`)."""

    def read_mask(self, name: str) -> np.ndarray | None: ...

    def write_mask(self, name: str, mask: np.ndarray) -> None: ...


#: CTs whose preprocessing and region are held in memory at most (the latest used): a fine-tune judges
#: on 3 held-out and 4 check cases; a ranking of many cases holds no more than these (a chest CT's
#: prepared image about 30 MB, its packed region up to 20 MB); a store serves regions let go.
KEPT = 8


@dataclass
class _Kept:
    store: MaskStore | None
    regions: OrderedDict = field(default_factory=OrderedDict)  # packed bits
    prepared: OrderedDict = field(default_factory=OrderedDict)


def _latest(items: OrderedDict, key):
    """``items[key]``, marked as the latest used; the oldest let go beyond :data:`KEPT`."""
    items.move_to_end(key)
    while len(items) > KEPT:
        items.popitem(last=False)
    return items[key]


_KEPT: ContextVar[_Kept | None] = ContextVar("lnq_kept_per_ct", default=None)


@contextmanager
def kept_per_ct(store: MaskStore | None = None) -> Iterator[None]:
    """Keep each CT's preprocessing and mediastinum region for the predictions made in this block;
    regions also in ``store`` (read from it when there)."""
    token = _KEPT.set(_Kept(store))
    try:
        yield
    finally:
        _KEPT.reset(token)


def region_code(*more) -> str:
    """A digest of the code a region comes from (the modules that draw it and the modules ``more``, scipy's
    and scikit-image's versions): a stored mask drawn by other code is never read."""
    return _code_digest((anatomy, components, orientation, *more))


@cache
def _code_digest(modules: tuple) -> str:
    import scipy
    import skimage

    digest = hashlib.sha256(f"{scipy.__version__}|{skimage.__version__}".encode())
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def ct_key(ct: Volume) -> str | None:
    """What ``ct`` is kept under in a :func:`kept_per_ct` block (None outside one): compute it once for
    several calls on one CT."""
    return None if _KEPT.get() is None else volumes_digest(ct)


def prepared_ct(ct: Volume, prep: PreprocessingConfig, key: str | None = None) -> Prepared:
    """:func:`~lnq_napari.preprocess.prepare` of ``ct`` (no labels), kept in a :func:`kept_per_ct` block
    (its arrays read-only); ``key``: :func:`ct_key`'s."""
    kept = _KEPT.get()
    if kept is None:
        return prepare(ct, prep)
    key = (key or volumes_digest(ct), json.dumps(asdict(prep), sort_keys=True, default=str))
    if key not in kept.prepared:
        prepared = prepare(ct, prep)
        prepared.image.setflags(write=False)
        kept.prepared[key] = prepared
    return _latest(kept.prepared, key)


def region_of(ct: Volume, margin_mm: float, key: str | None = None) -> np.ndarray:
    """:func:`~lnq_napari.anatomy.mediastinum_region` of ``ct``, kept packed in a :func:`kept_per_ct`
    block (and in its store); a fresh array for each caller; ``key``: :func:`ct_key`'s."""
    kept = _KEPT.get()
    if kept is None:
        return mediastinum_region(ct, float(margin_mm))
    name = f"region-{(key or volumes_digest(ct))[:24]}-{float(margin_mm):g}mm-{region_code()}.npz"
    if name not in kept.regions:
        region = None if kept.store is None else kept.store.read_mask(name)
        if region is None or region.shape != ct.shape:
            region = mediastinum_region(ct, float(margin_mm))
            if kept.store is not None:
                with contextlib.suppress(OSError):  # a read-only or full workspace: computed again next time
                    kept.store.write_mask(name, region)
        kept.regions[name] = np.packbits(region)
    packed = _latest(kept.regions, name)
    return np.unpackbits(packed, count=int(np.prod(ct.shape))).view(bool).reshape(ct.shape)
