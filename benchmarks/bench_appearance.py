"""CT that looks different from the phantoms and from calibrated CT: what the tool finds and what it says.

Each variant of the demo phantom (its truth gives Dice and node recall) and of slicerio's CTChest4 (no
truth: nodes and suggestions against the unchanged CT) goes through ``api.find_nodes``; the table gives
nodes found, Dice / recall and the warning or refusal said (first 90 characters), or "-" when none.
Calibrated CTs (the demo phantom, every phantom site, CTChest4, dcmqi's 3-slice CT) must stay quiet.
Run it once per code version (``--label``) to compare, e.g. the old code through PYTHONPATH:

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_appearance.py --label after
    PYTHONPATH=/tmp/old OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_appearance.py --label before
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from lnq_napari import api, metrics
from lnq_napari.errors import LNQError
from lnq_napari.io.volume import Volume
from lnq_napari.phantom import make_case
from lnq_napari.phantom.sites import SITES

sys.path.insert(0, str(Path(__file__).parent))
from _chest_variants import metal  # noqa: E402


def _noise(shape: tuple[int, ...], sd: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, shape).astype(np.float32)


def _windowed(hu: np.ndarray) -> np.ndarray:
    """A soft-tissue window (level 40, width 400) to 0..255, as a viewer's 8-bit export."""
    return np.clip((hu.astype(np.float32) + 160.0) / 400.0 * 255.0, 0, 255)


def _tight(hu: np.ndarray, truth: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Cropped to the body's box: no air outside the body."""
    body = ndimage.binary_opening(hu > -500, iterations=2)
    box = tuple(slice(int(np.nonzero(body.any(axis=tuple(b for b in range(3) if b != a)))[0][[0, -1]][0]),
                      int(np.nonzero(body.any(axis=tuple(b for b in range(3) if b != a)))[0][[0, -1]][1]) + 1)
                if a else slice(None) for a in range(3))
    return hu[box], None if truth is None else truth[box]


def _arterial(hu: np.ndarray, truth: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Blood pools (block means 110-330 HU, at least 1 cm^2 a slice) raised by 200 HU (aorta 350-450)."""
    hu = hu.astype(np.float32)
    smooth = ndimage.uniform_filter(hu, (1, 5, 5))
    pool = ndimage.binary_opening((smooth > 110) & (smooth < 330), iterations=2)
    out = hu.copy()
    out[pool] += 200.0
    return out, truth


def _small(hu: np.ndarray, truth: np.ndarray | None,
           scale: float = 0.6) -> tuple[np.ndarray, np.ndarray | None]:
    """The patient at ``scale`` in the same field of view (zoomed in-plane and along z, padded with air)."""
    small = ndimage.zoom(hu.astype(np.float32), scale, order=1)
    out = -1000.0 + _noise(hu.shape, 10.0, 2)
    lo = [(n - m) // 2 for n, m in zip(hu.shape, small.shape)]
    box = tuple(slice(a, a + m) for a, m in zip(lo, small.shape))
    out[box] = small
    moved = None
    if truth is not None:
        moved = np.zeros(hu.shape, dtype=truth.dtype)
        moved[box] = ndimage.zoom(truth, scale, order=0)
    return out, moved


Variant = Callable[[np.ndarray, np.ndarray | None, tuple[float, float, float]],
                   tuple[np.ndarray, np.ndarray | None]]


def _same(f: Callable[[np.ndarray], np.ndarray]) -> Variant:
    """A variant that changes the CT's values only."""
    return lambda hu, truth, spacing: (f(hu), truth)


def _central(hu: np.ndarray, truth: np.ndarray | None, keep: float) -> tuple[np.ndarray, np.ndarray | None]:
    """The central ``keep`` share of each slice's rows and columns: a targeted view cutting body and lungs."""
    y, x = hu.shape[1:]
    box = (slice(None), slice(int(y * (1 - keep) / 2), int(y * (1 + keep) / 2)),
           slice(int(x * (1 - keep) / 2), int(x * (1 + keep) / 2)))
    return hu[box], None if truth is None else truth[box]


def _cubic_padded(hu: np.ndarray, truth: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A -3024 scanner circle round the view, moved half a pixel in-plane with a cubic kernel (a B-spline
    resampling: its undershoot spreads the padding's edge below -3024)."""
    out = hu.astype(np.float32)
    yy, xx = np.indices(out.shape[1:])
    out[:, np.hypot(yy - out.shape[1] / 2, xx - out.shape[2] / 2) > min(out.shape[1:]) / 2 - 1] = -3024
    moved = ndimage.shift(out, (0, 0.5, 0.5), order=3, mode="nearest")
    return moved, None if truth is None else ndimage.shift(truth, (0, 0.5, 0.5), order=0, mode="nearest")


VARIANTS: dict[str, Variant] = {
    "calibrated": _same(lambda hu: hu),
    "offset -100": _same(lambda hu: hu.astype(np.float32) - 100),
    "offset -50": _same(lambda hu: hu.astype(np.float32) - 50),
    "offset +50": _same(lambda hu: hu.astype(np.float32) + 50),
    "offset +100": _same(lambda hu: hu.astype(np.float32) + 100),
    "offset +200": _same(lambda hu: hu.astype(np.float32) + 200),
    "slope x0.5": _same(lambda hu: hu.astype(np.float32) * 0.5),
    "slope x2": _same(lambda hu: hu.astype(np.float32) * 2),
    "slope x1.1 about -1024": _same(lambda hu: (hu.astype(np.float32) + 1024) * 1.1 - 1024),
    "slope x1.2 about -1024": _same(lambda hu: (hu.astype(np.float32) + 1024) * 1.2 - 1024),
    "stored (+1024)": _same(lambda hu: hu.astype(np.float32) + 1024),
    "uint8 window": _same(lambda hu: _windowed(hu).astype(np.uint8)),
    "float 0..1": _same(lambda hu: _windowed(hu) / 255.0),
    "tenths (x10)": _same(lambda hu: hu.astype(np.float32) * 10),
    "view 40 % (cut lungs)": lambda hu, truth, spacing: _central(hu, truth, 0.4),
    "view 60 % (cut lungs)": lambda hu, truth, spacing: _central(hu, truth, 0.6),
    "cubic -3024 circle": lambda hu, truth, spacing: _cubic_padded(hu, truth),
    "tight crop": lambda hu, truth, spacing: _tight(hu, truth),
    "arterial": lambda hu, truth, spacing: _arterial(hu, truth),
    "metal streaks": lambda hu, truth, spacing: (metal(hu, [], spacing)[0], truth),
    "smooth (IR)": _same(lambda hu: ndimage.gaussian_filter(hu.astype(np.float32), (0, 1.5, 1.5))),
    "very noisy": _same(lambda hu: hu.astype(np.float32) + _noise(hu.shape, 120.0, 5)),
    "small body 0.6": lambda hu, truth, spacing: _small(hu, truth),
}


def _row(name: str, ct: Volume, truth: Volume | None) -> str:
    said: list[str] = []
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        try:
            result = api.find_nodes(ct)
        except LNQError as exc:
            result, said = None, [f"REFUSED: {exc}"]
    said += [str(w.message) for w in heard if issubclass(w.category, UserWarning)]
    text = (said[0][:90] + ("..." if len(said[0]) > 90 else "")) if said else "-"
    if result is None:
        return f"{name:<28} {'-':>5} {'-':>5} {'-':>12}  {text}"
    found = f"{len(result.nodes)}"
    score = "-"
    if truth is not None:
        s = metrics.evaluate_case(result.binary_mask(), truth)
        score = f"{s.dice:.2f}/{s.nodes_hit}of{s.nodes_gt}"
    return f"{name:<28} {found:>5} {len(result.suggestions):>5} {score:>12}  {text}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="")
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--no-chest", action="store_true")
    parser.add_argument("--no-quiet", action="store_true", help="skip the calibrated sites and dcmqi CT")
    args = parser.parse_args(argv)
    chosen = [v for v in VARIANTS if not args.only or v in args.only.split(",")]
    print(f"== {args.label}: variant, nodes, suggestions, Dice/nodes hit, warning or refusal")
    case = make_case(api.DEMO_SEED, case_id="demo")
    hu, truth = np.asarray(case.ct.array), np.asarray(case.full.array)
    for name in chosen:
        out, t = VARIANTS[name](hu, truth, case.ct.spacing_zyx)
        grid = {"spacing": case.ct.spacing, "origin": case.ct.origin, "direction": case.ct.direction}
        ct, gt = Volume(np.asarray(out), **grid), Volume(np.asarray(t), **grid)
        print(_row(f"phantom {name}", ct, gt), flush=True)
    if not args.no_chest:
        import slicerio

        from lnq_napari.io.readers import read_volume

        chest = read_volume(slicerio.get_testdata_file("CTChest4.nrrd"))
        for name in chosen:
            out, _ = VARIANTS[name](np.asarray(chest.array), None, chest.spacing_zyx)
            print(_row(f"CTChest4 {name}", Volume(np.asarray(out), spacing=chest.spacing, origin=chest.origin,
                                                  direction=chest.direction), None), flush=True)
    if not args.no_quiet:
        for site in SITES:
            if site != "default":
                c = make_case(api.DEMO_SEED, case_id="site", site=site)
                print(_row(f"site {site}", c.ct, c.full), flush=True)
        dcmqi = Path("/work/shared/data/dcmqi/ct-3slice")
        if dcmqi.is_dir():
            from lnq_napari.io.readers import read_volume

            print(_row("dcmqi ct-3slice", read_volume(dcmqi), None), flush=True)


if __name__ == "__main__":
    main()
