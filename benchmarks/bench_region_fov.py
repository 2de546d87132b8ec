"""The mediastinum region on a field of view that cuts through the lungs (a reconstruction narrower than
the chest, a crop): how much of the whole CT's region a crop keeps, and how much of the crop it covers.

    python benchmarks/bench_region_fov.py [--cases 3] [--rows all|variants]

CTChest4 (slicerio's real chest CT) and ``--cases`` full-size phantom cases (seeds 33, 34, ...), each cut
three ways inside its lungs' extent: laterally (both lungs cut), anteriorly (the front chest wall and the
lungs' front cut) and both. Per crop: ``kept``, the share of the whole CT's region (cropped alike) that the
crop's own region covers (1.0: no node the whole CT would keep is dropped), and ``covers``, the share of
the crop that is region (1.0 would be no restriction). For phantoms also ``nodes_out``: true nodes lying
mostly outside the crop's region. Run it with ``PYTHONPATH`` on another checkout to compare.

The same CTs are also padded outside a scanner's circular field of view (``circle``, at the value given:
-3024, -2048 or -1024), centred on the lungs, with a radius a few voxels inside their lateral extent (the
circle cuts both lungs) or 15 mm beyond it (``wide``: it cuts the body only); ``kept`` is then the share
of the whole CT's region inside the circle that the padded CT's region covers.

``frame`` rows pad with -1024 outside straight sides, as a tool that rotates, shifts or crops a CT and fills
with -1024 leaves it: ``band`` outside the lateral crop's columns (both lungs cut), ``tilted`` the same band
turned 15 degrees; ``ellipse`` is the cutting circle at -1024 on the CT resampled to pixels 4/3 as wide as
high (a circle in mm, an ellipse in indices). ``kept`` as for the circles.

``sliver`` rows cut one lung (the one at low x) to 50, 25 or 15 % of its width: by the image edge (a crop)
or by -1024 padding (a narrow field of view); ``kept`` within the view. For phantoms every row also gives
``voxels_out``, the true node voxels (in view) outside the region.

``variant`` rows change the CT as chests unlike the phantoms look (benchmarks/_chest_variants.py: one lung
removed, an effusion, emphysema, a child, obese, arms down, metal, no table, the mediastinum only, neck to
pelvis, prone, an HU offset, one lung cut to a 10 or 5 % sliver); ``kept`` is the share of the whole CT's
region, moved as the CT was, that the variant's region covers, and ``warned`` whether it warned.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import replace

import numpy as np
from _chest_variants import VARIANTS

from lnq_napari.anatomy import coarse_anatomy, mediastinum_region
from lnq_napari.components import label_components
from lnq_napari.followup.match import sub_volume
from lnq_napari.io.readers import read_volume
from lnq_napari.io.volume import Volume
from lnq_napari.phantom import make_case


def crops(ct: Volume) -> dict[str, tuple[slice, slice, slice]]:
    """Boxes that cut the lungs: laterally, anteriorly and both (a few voxels inside the lungs' extent)."""
    anatomy = coarse_anatomy(np.asarray(ct.array), ct.spacing_zyx)
    lungs = anatomy.upsample(anatomy.lungs)
    xs, ys = np.nonzero(lungs.any(axis=(0, 1)))[0], np.nonzero(lungs.any(axis=(0, 2)))[0]
    dx, dy = max(2, (xs.max() - xs.min()) // 25), max(2, (ys.max() - ys.min()) // 20)
    every = slice(None)
    lateral = slice(int(xs.min() + dx), int(xs.max() - dx))
    anterior = slice(int(ys.min() + dy), None)
    return {"lateral": (every, every, lateral), "anterior": (every, anterior, every),
            "both": (every, anterior, lateral)}


def circles(ct: Volume, padding: tuple[int, ...] = (-3024, -1024)) -> dict[str, tuple[Volume, np.ndarray]]:
    """``(ct padded, the circle in view (y x))`` for circles (in mm) centred on its lungs: cutting both lungs
    (a few voxels inside their lateral extent) or wide (15 mm beyond it), at each ``padding`` value."""
    anatomy = coarse_anatomy(np.asarray(ct.array), ct.spacing_zyx)
    lungs = anatomy.upsample(anatomy.lungs)
    ys, xs = np.nonzero(lungs.any(axis=0))
    cy, cx, half = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2, (xs.max() - xs.min()) / 2
    yy, xx = np.ogrid[: ct.shape[1], : ct.shape[2]]
    sy, sx = ct.spacing_zyx[1:]
    out = {}
    for name, radius in (("cut", half - max(3, half // 12)), ("wide", half + 15.0 / sx)):
        outside = ((yy - cy) * sy) ** 2 + ((xx - cx) * sx) ** 2 > (radius * sx) ** 2  # a circle in mm
        for value in padding:
            padded = np.where(outside[None], value, ct.array).astype(ct.array.dtype)
            out[f"{name}{value}"] = (ct.with_array(padded), ~outside)
    return out


def frames(ct: Volume) -> dict[str, tuple[Volume, np.ndarray, np.ndarray | None]]:
    """``(ct padded with -1024, the view (y x), the CT's own unpadded copy when resampled)`` for straight
    sides cutting both lungs (``band``; ``tilted`` 15 degrees) and for the cutting circle on pixels that
    are not square (``ellipse``: the CT resampled in x, returned as the third item)."""
    from scipy import ndimage

    every, every, lateral = crops(ct)["lateral"]
    band = np.zeros(ct.shape[1:], dtype=bool)
    band[:, lateral] = True
    tilted = ndimage.rotate(band.astype(np.uint8), 15.0, reshape=False, order=0, cval=0).astype(bool)
    out = {name: (ct.with_array(np.where(view[None], ct.array, -1024).astype(ct.array.dtype)), view, None)
           for name, view in (("band", band), ("tilted", tilted))}
    x, y, z = ct.spacing
    resampled = ndimage.zoom(np.asarray(ct.array, np.float32), (1, 1, 0.75), order=1).round().astype(np.int16)
    wide = replace(ct, array=resampled, spacing=(x / 0.75, y, z))
    padded, view = circles(wide, (-1024,))["cut-1024"]
    out["ellipse"] = (padded, view, wide)
    return out


def slivers(ct: Volume) -> dict[str, int]:
    """The first column in view when one lung (at low x) keeps 50, 25 or 15 % of its width (the trachea,
    whose air joins the lungs' columns, left out)."""
    anatomy = coarse_anatomy(np.asarray(ct.array), ct.spacing_zyx)
    xs = np.nonzero(anatomy.upsample(anatomy.lungs))[2]
    first, last = np.percentile(xs[xs < (xs.min() + xs.max()) / 2], [0.5, 99.5])
    return {f"{share:.0%}": int(round(last - share * (last - first))) for share in (0.5, 0.25, 0.15)}


def _row(name: str, cut: str, region: np.ndarray, whole: np.ndarray, truth: np.ndarray | None) -> dict:
    row = {"ct": name, "crop": cut, "kept": float(region[whole].mean()), "covers": float(region.mean())}
    if truth is not None:
        parts, n = label_components(truth)
        row["nodes_out"] = sum(region[parts == k].mean() < 0.5 for k in range(1, n + 1))
        row["nodes"] = n
        row["voxels_out"], row["voxels"] = int((truth & ~region).sum()), int(truth.sum())
    return row


def variant_rows(name: str, ct: Volume, truth: np.ndarray | None, whole: np.ndarray) -> list[dict]:
    """A row per chest variant (:data:`_chest_variants.VARIANTS`): ``kept`` of the whole CT's region moved
    as the CT was, whether it warned, and the seconds the region took."""
    rows = []
    for variant, make in VARIANTS.items():
        hu, moved = make(np.asarray(ct.array), [whole] + ([] if truth is None else [truth]), ct.spacing_zyx)
        changed = replace(ct, array=np.clip(np.round(hu), -32768, 32767).astype(np.int16))
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            region = mediastinum_region(changed, 10.0)
        row = _row(name, f"variant {variant}", region, moved[0], None if truth is None else moved[1])
        rows.append(row | {"warned": bool(said), "seconds": time.perf_counter() - start})
    return rows


def rows_of(name: str, ct: Volume, truth: np.ndarray | None, only_variants: bool = False) -> list[dict]:
    from scipy import ndimage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = mediastinum_region(ct, 10.0)
        rows = variant_rows(name, ct, truth, whole)
        if only_variants:
            return rows
        for cut, box in crops(ct).items():
            region = mediastinum_region(sub_volume(ct, box), 10.0)
            rows.append(_row(name, cut, region, whole[box], None if truth is None else truth[box]))
        for cut, (padded, view) in circles(ct).items():
            inside = np.broadcast_to(view[None], ct.shape)
            region = mediastinum_region(padded, 10.0) & inside
            rows.append(_row(name, f"circle {cut}", region, whole & inside,
                             None if truth is None else truth & inside))
        for cut, (padded, view, resampled) in frames(ct).items():
            inside = np.broadcast_to(view[None], padded.shape)
            own, true = whole, truth
            if resampled is not None:  # the region and truth on the resampled grid
                own = mediastinum_region(resampled, 10.0)
                if truth is not None:
                    true = ndimage.zoom(truth.astype(np.uint8), (1, 1, 0.75), order=0) > 0
            region = mediastinum_region(padded, 10.0) & inside
            rows.append(_row(name, f"frame {cut}", region, own & inside,
                             None if true is None else true & inside))
        for share, column in slivers(ct).items():
            box = (slice(None), slice(None), slice(column, None))
            region = mediastinum_region(sub_volume(ct, box), 10.0)
            rows.append(_row(name, f"sliver {share} crop", region, whole[box],
                             None if truth is None else truth[box]))
            inside = np.zeros(ct.shape, dtype=bool)
            inside[box] = True
            padded = ct.with_array(np.where(inside, ct.array, -1024).astype(ct.array.dtype))
            region = mediastinum_region(padded, 10.0) & inside
            rows.append(_row(name, f"sliver {share} -1024", region, whole & inside,
                             None if truth is None else truth & inside))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3, help="full-size phantom cases (default 3)")
    parser.add_argument("--rows", choices=("all", "variants"), default="all",
                        help="all rows, or the chest variants' only")
    args = parser.parse_args(argv)
    import slicerio

    only = args.rows == "variants"
    rows = rows_of("CTChest4", read_volume(slicerio.get_testdata_file("CTChest4.nrrd")), None, only)
    for k in range(args.cases):
        case = make_case(33 + k)
        rows += rows_of(case.case_id, case.ct, np.asarray(case.full.array) > 0, only)
    for row in rows:
        nodes = (f", true nodes outside {row['nodes_out']} of {row['nodes']} ({row['voxels_out']} of "
                 f"{row['voxels']} voxels)" if "nodes" in row else "")
        said = (f", {'warned' if row['warned'] else 'no warning'}, {row['seconds']:.1f} s"
                if "warned" in row else "")
        print(f"{row['ct']:>22} {row['crop']:>26}: kept {row['kept']:.3f} of the whole CT's region, "
              f"covers {row['covers']:.3f} of the crop{nodes}{said}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
