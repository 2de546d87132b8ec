"""`write_dataset`: phantom cases written in the LNQ2023 file layout, the site named in each case."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.io.atomic import atomic_write, atomic_write_text, check_output_folder
from lnq_napari.io.outputs import check_not_users
from lnq_napari.io.provenance import created_by
from lnq_napari.io.volume import Volume
from lnq_napari.phantom.case import check_shape, check_spacing, make_case
from lnq_napari.phantom.sites import get_site
from lnq_napari.processes import broken_pool_said, process_pool, usable_workers

#: The most cases one data set holds (a mistyped count ran out of memory listing them).
MAX_CASES = 10_000


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` (0-based) of a data set drawn with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _write_nrrd(vol: Volume, path: Path, header: dict[str, str] | None = None) -> None:
    """Write ``vol`` as a gzip-compressed NRRD (LPS, exact geometry, ``header`` fields), atomically."""
    import SimpleITK as sitk

    image = vol.to_sitk()
    for key, value in (header or {}).items():
        image.SetMetaData(key, value)
    with atomic_write(path, suffix=".nrrd") as tmp:
        sitk.WriteImage(image, str(tmp), True, 1)  # gzip, fast level


def write_case_files(out: Path, case, info: dict) -> Path:
    """Write a drawn case's ``-seg``, ``-full`` and ``-nodes.json`` files and its CT last (so a CT on disk
    always has its companions), each atomically and the NRRDs marked as the phantom's; returns the CT
    path. ``info``: the JSON's fields besides the case's id, grid and nodes."""
    cid = case.case_id
    _write_nrrd(case.partial, out / f"{cid}-seg.nrrd", created_by("phantom"))
    _write_nrrd(case.full, out / f"{cid}-full.nrrd", created_by("phantom"))
    ct = case.ct
    grid = {"spacing": list(ct.spacing), "origin": list(ct.origin), "shape_zyx": list(ct.shape)}
    atomic_write_text(out / f"{cid}-nodes.json",
                      json.dumps({"case_id": cid, **info, **grid, "nodes": case.nodes}, indent=1))
    ct_path = out / f"{cid}-ct.nrrd"
    site = {"lnq_site": case.ct.meta["lnq_site"]} if "lnq_site" in case.ct.meta else {}
    _write_nrrd(case.ct, ct_path, {**site, **created_by("phantom")})
    return ct_path


def write_case(
    out: Path, prefix: str, seed: int, index: int, shape=None, spacing=None, site: str = "default"
) -> Path:
    """Draw case ``index`` of the data set ``seed`` and write its four files; returns the CT path."""
    cid = f"{prefix}-{index + 1:04d}"
    case = make_case(case_seed(seed, index), shape=shape, spacing=spacing, case_id=cid, site=site)
    return write_case_files(out, case, {
        "seed": case_seed(seed, index),
        "dataset_seed": int(seed),
        "index": index,
        "site": case.ct.meta["lnq_site"],
        "contrast": bool(case.ct.meta.get("contrast", False)),
    })


def write_dataset(
    out: str | Path,
    n_cases: int,
    seed: int = 0,
    shape=None,
    spacing=None,
    progress: Callable[[float, str], None] | None = None,
    prefix: str = "lnq2023-train",
    cancel: Callable[[], bool] | None = None,
    workers: int = 1,
    site: str = "default",
) -> list[Path]:
    """Write ``n_cases`` phantom cases of the CT source ``site`` to ``out`` in the LNQ layout.

    Returns the CT paths.

    Per case NNNN (from 0001): ``{prefix}-NNNN-ct.nrrd`` (int16 HU), ``-seg.nrrd`` (partial labels),
    ``-full.nrrd`` (complete truth) and ``-nodes.json``. Case i is drawn from ``case_seed(seed, i)``.
    Each file is written atomically and the CT last, so a CT on disk always has its companions; the
    NRRD files are marked as the phantom's, and a file of those names that is not (a download's CT or
    labels) is an LNQError before anything is written.
    ``cancel()`` returning True stops between cases with `Cancelled` (finished cases stay).
    ``workers`` > 1 draws cases in that many processes; the files are the same. ``site`` names an entry
    of `lnq_napari.phantom.sites.SITES`; it is recorded in ``-nodes.json`` and the CT header (``lnq_site``).
    """
    out = check_output_folder(out, "output", "the phantom cases")
    site = get_site(site).name
    whole = isinstance(n_cases, (int, np.integer)) and not isinstance(n_cases, bool)
    if not whole or not 1 <= n_cases <= MAX_CASES:
        raise LNQError(f"number of cases must be a whole number from 1 to {MAX_CASES}, got {n_cases!r}; use "
                       "e.g. --cases 4")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise LNQError(f"seed must be a non-negative integer, got {seed!r}; use e.g. --seed 0")
    if shape is not None:
        check_shape(shape)
    if spacing is not None:
        check_spacing(spacing)
    check_not_users((out / f"{prefix}-{i + 1:04d}-{kind}.nrrd" for i in range(n_cases)
                     for kind in ("ct", "seg", "full")), "output", ("phantom",))  # a download's files stay
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LNQError(f"cannot create output folder {out}: {exc.strerror}; choose another path") from None
    args = [(out, prefix, int(seed), i, shape, spacing, site) for i in range(n_cases)]
    paths: list[Path] = []
    if usable_workers(workers) > 1 and n_cases > 1:
        with broken_pool_said(), process_pool(min(workers, n_cases)) as pool:
            futures = [pool.submit(write_case, *a) for a in args]
            for i, future in enumerate(futures):
                if cancel is not None and cancel():
                    pool.shutdown(cancel_futures=True)
                    raise Cancelled(f"phantom data set stopped after {i} of {n_cases} cases")
                paths.append(future.result())
                if progress:
                    progress((i + 1) / n_cases, f"case {i + 1}/{n_cases}")
        return paths
    for i, a in enumerate(args):
        if cancel is not None and cancel():
            raise Cancelled(f"phantom data set stopped after {i} of {n_cases} cases")
        if progress:
            progress(i / n_cases, f"case {i + 1}/{n_cases}")
        paths.append(write_case(*a))
    if progress:
        progress(1.0, f"{n_cases} cases")
    return paths
