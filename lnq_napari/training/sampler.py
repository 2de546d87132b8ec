"""Patch sampling from preprocessed cases, oversampling patches centred on annotated nodes.

Sources marked ``replay`` (cases replayed so a fine-tune does not forget) form a second pool; with a
``replay_fraction`` that share of each batch's patches comes from them, the rest from the other cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lnq_napari.preprocess import PreprocessingConfig, normalize


@dataclass
class PatchSource:
    """One preprocessed case: normalised ``image`` and int8 ``states`` on the model grid (z, y, x)."""

    case_id: str
    image: np.ndarray
    states: np.ndarray
    node_voxels: np.ndarray  # (N, 3) indices of annotated voxels (a subsample)
    focus_voxels: np.ndarray | None = None  # (M, 3) indices of focus voxels (a subsample), if any
    focus: np.ndarray | None = None  # bool, the focus voxels (a reviewer's edits), if any
    replay: bool = False  # a replay case (its own share of each batch, see PatchSampler)

    @classmethod
    def build(cls, case_id: str, image: np.ndarray, states: np.ndarray, rng: np.random.Generator,
              max_points: int = 4000, focus: np.ndarray | None = None, replay: bool = False) -> PatchSource:
        def points(mask: np.ndarray) -> np.ndarray:
            pts = np.argwhere(mask)
            return pts[rng.choice(len(pts), max_points, replace=False)] if len(pts) > max_points else pts

        focus = None if focus is None else np.asarray(focus, bool)
        return cls(case_id, image.astype(np.float32, copy=False), states.astype(np.int8, copy=False),
                   points(states == 1), None if focus is None else points(focus), focus, replay)


@dataclass
class PatchBatch:
    """A batch shaped (B, 1, z, y, x): float32 ``images``, int8 ``states`` and bool ``edited`` (focus)
    voxels, and per patch whether it came from a replay case."""

    images: np.ndarray
    states: np.ndarray
    edited: np.ndarray
    from_replay: np.ndarray


@dataclass(frozen=True)
class _Pool:
    """Indices of a group of sources: all of them, those with nodes, those with focus voxels."""

    every: list[int]
    with_nodes: list[int]
    with_focus: list[int]

    @classmethod
    def of(cls, sources: list[PatchSource], which: list[int]) -> _Pool:
        return cls(which, [i for i in which if len(sources[i].node_voxels)],
                   [i for i in which if sources[i].focus_voxels is not None and len(sources[i].focus_voxels)])


def crop(array: np.ndarray, center, size, fill) -> np.ndarray:
    """The ``size`` block of ``array`` centred on ``center``, padded with ``fill`` beyond the border."""
    out = np.full(size, fill, dtype=array.dtype)
    src, dst = [], []
    for c, s, n in zip(center, size, array.shape):
        lo = int(c) - s // 2
        a, b = max(lo, 0), min(lo + s, n)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[tuple(dst)] = array[tuple(src)]
    return out


@dataclass(frozen=True)
class Unenhance:
    """Augmentation: show a patch's contrast-enhanced structures as in an unenhanced CT, as background.

    In a contrast CT the vessels are bright, so their shape teaches nothing; in an unenhanced CT the same
    vessels have node HU and the label-state rules leave them unknown, so nothing teaches the network
    that they are not nodes. This remaps each enhanced structure of a patch (bright and connected:
    holding known background above the states' high HU, or a mean above ``enhanced``) to unenhanced
    blood HU (fat is the fixed point) and marks its unknown voxels known background. Nodes do not
    enhance that much; annotated node voxels are never changed. Values are in normalised image units.
    """

    probability: float
    bright: float  # known background above this is enhanced (the states' high HU)
    enhanced: float  # a bright structure whose mean is above this is enhanced too
    rim: float  # a structure is the connected voxels above this (its partial-volume rim included)
    fat: float  # the fixed point of the remap
    blood: tuple[float, float]  # unenhanced blood range the structure's mean is mapped to
    min_voxels: int = 20

    @classmethod
    def from_hu(cls, probability: float, prep: PreprocessingConfig, bright_hu: float) -> Unenhance:
        def to_image(hu: float) -> float:
            return float(normalize(np.float32(hu), prep))

        return cls(probability, to_image(bright_hu), to_image(150.0), to_image(100.0), to_image(-100.0),
                   (to_image(30.0), to_image(55.0)))

    def __call__(self, image: np.ndarray, states: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from scipy import ndimage

        if self.probability <= 0 or rng.random() >= self.probability:
            return image, states
        lab, n = ndimage.label(image > self.rim)
        if n == 0:
            return image, states
        flat = lab.ravel()
        size = np.bincount(flat, minlength=n + 1)
        known = np.bincount(flat, weights=((states == 0) & (image > self.bright)).ravel(), minlength=n + 1)
        mean = np.bincount(flat, weights=image.ravel(), minlength=n + 1) / np.maximum(size, 1)
        take = (size >= self.min_voxels) & ((known >= 8) | (mean > self.enhanced))
        take[0] = False
        if not take.any():
            return image, states
        region = take[lab] & (states != 1)
        out = image.copy()
        ratio = (rng.uniform(*self.blood) - self.fat) / np.maximum(mean[lab[region]] - self.fat, 1e-3)
        out[region] = self.fat + (image[region] - self.fat) * ratio
        st = states.copy()
        st[region] = 0
        return out, st


class PatchSampler:
    """Draws (image, states) patch batches; a fraction ``fg_fraction`` is centred near annotated nodes.

    With ``focus_fraction`` > 0 that share of the node-centred patches is centred near focus voxels (a
    reviewer's edits) instead, so the balance of node and random patches stays the same. With
    ``replay_fraction`` (and sources of both kinds) that share of each batch, rounded at random to a
    whole number of patches, comes from the replay sources and the rest from the others; without it every
    source is drawn alike.
    """

    def __init__(self, sources: list[PatchSource], patch_size, fg_fraction: float, pad: float,
                 rng: np.random.Generator, flip_x: bool = True, intensity_jitter: float = 0.1,
                 unenhance: Unenhance | None = None, focus_fraction: float = 0.0,
                 replay_fraction: float | None = None) -> None:
        self.sources = sources
        self.patch = tuple(int(p) for p in patch_size)
        self.fg_fraction = float(fg_fraction)
        self.pad = float(pad)
        self.rng = rng
        self.flip_x = flip_x
        self.jitter = float(intensity_jitter)
        self.unenhance = unenhance
        self.focus_fraction = float(focus_fraction)
        self.everything = _Pool.of(sources, list(range(len(sources))))
        self.primary = _Pool.of(sources, [i for i, s in enumerate(sources) if not s.replay])
        self.replayed = _Pool.of(sources, [i for i, s in enumerate(sources) if s.replay])
        mixed = replay_fraction is not None and self.primary.every and self.replayed.every
        self.replay_fraction = float(replay_fraction) if mixed else None

    def _near(self, which: list[int], attr: str) -> tuple[int, tuple[int, int, int]]:
        rng = self.rng
        i = int(which[rng.integers(len(which))])
        pts = getattr(self.sources[i], attr)
        base = pts[rng.integers(len(pts))]
        shift = [int(rng.integers(-(p // 4), p // 4 + 1)) for p in self.patch]
        return i, tuple(int(b) + s for b, s in zip(base, shift))

    def _center(self, pool: _Pool) -> tuple[int, tuple[int, int, int]]:
        rng = self.rng
        if pool.with_nodes and rng.random() < self.fg_fraction:
            if pool.with_focus and rng.random() < self.focus_fraction:
                return self._near(pool.with_focus, "focus_voxels")
            return self._near(pool.with_nodes, "node_voxels")
        i = int(pool.every[rng.integers(len(pool.every))])
        shape = self.sources[i].image.shape
        return i, tuple(int(rng.integers(0, n)) for n in shape)

    def _pools(self, batch_size: int) -> list[_Pool]:
        """The pool of each patch of a batch: the replay share first (stochastically rounded)."""
        if self.replay_fraction is None:
            return [self.everything] * batch_size
        n_replay = int(np.floor(self.replay_fraction * batch_size + self.rng.random()))
        n_replay = min(n_replay, batch_size)
        return [self.replayed] * n_replay + [self.primary] * (batch_size - n_replay)

    def sample_batch(self, batch_size: int) -> PatchBatch:
        """A :class:`PatchBatch` of ``batch_size`` augmented patches."""
        shape = (batch_size, 1, *self.patch)
        batch = PatchBatch(np.empty(shape, np.float32), np.empty(shape, np.int8), np.zeros(shape, bool),
                           np.zeros(batch_size, bool))
        for b, pool in enumerate(self._pools(batch_size)):
            i, center = self._center(pool)
            src = self.sources[i]
            img = crop(src.image, center, self.patch, self.pad)
            st = crop(src.states, center, self.patch, 0)
            edited = crop(src.focus, center, self.patch, False) if src.focus is not None else None
            if self.unenhance is not None:
                img, st = self.unenhance(img, st, self.rng)
            if self.flip_x and self.rng.random() < 0.5:
                img, st = img[:, :, ::-1], st[:, :, ::-1]
                edited = None if edited is None else edited[:, :, ::-1]
            if self.jitter > 0:
                scale, shift = self.rng.uniform(-1, 1, size=2) * self.jitter
                img = img * (1.0 + scale) + shift
            batch.images[b, 0], batch.states[b, 0], batch.from_replay[b] = img, st, src.replay
            if edited is not None:
                batch.edited[b, 0] = edited
        return batch

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(images, states)`` shaped (B, 1, z, y, x), float32 and int8."""
        batch = self.sample_batch(batch_size)
        return batch.images, batch.states
