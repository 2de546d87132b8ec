"""Phantom sites: named shifts between CT sources (protocol, scanner, population), one registry.

A `Site` is a frozen set of parameters that the generator applies at its own stage: the grid
(slice thickness, field of view), the anatomy (body habitus, mediastinum, fat), the vessels (contrast),
the nodes (appearance) and the scanner (noise, kernel, HU calibration). ``SITES["default"]`` changes
nothing: it is the phantom the bundled model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from lnq_napari.errors import LNQError


@dataclass(frozen=True)
class Site:
    """The parameters of one CT source; every default leaves the generator as it is."""

    name: str
    summary: str  # one line for the help and the docs
    # grid / acquisition
    slice_mm: float | None = None  # slice spacing, replacing the drawn or given z spacing
    pv_subslices: int = 1  # thin slices drawn and averaged into each slice (partial volume)
    fov_scale: float = 1.0  # in-plane pixel size factor (a wider field of view)
    hu_offset: float = 0.0  # HU calibration offset of the whole image
    # scanner noise and reconstruction kernel
    noise_scale: float = 1.0  # image noise std factor
    kernel_blur_scale: float = 1.0  # in-plane blur factor (< 1: sharper kernel)
    edge_enhance: float = 0.0  # in-plane unsharp-mask gain of an edge-enhancing kernel
    # anatomy and vessels
    contrast: bool | None = None  # None: drawn per case (60 % enhanced); False: never enhanced
    body_scale: float = 1.0  # body width and depth factor
    fat_mm: tuple[float, float] = (5.0, 25.0)  # range of subcutaneous fat thickness
    mediastinum_width: float = 1.0  # left-right factor of the mediastinal structures and stations
    mediastinal_fat: float = 1.0  # factor of the fat margins around vessels, heart and stations
    med_fat_hu: float = -90.0  # HU of mediastinal fat
    # nodes
    node_hu_shift: float = 0.0  # added to every node's mean HU
    node_irregularity: float = 1.0  # factor of the nodes' radial perturbation
    cluster: float = 0.0  # chance that a target node is placed touching another (conglomerate)
    necrotic: float = 0.0  # share of target nodes with a low-HU (necrotic) centre
    calcified: float = 0.0  # share of nodes with calcifications


SITES: dict[str, Site] = {
    s.name: s
    for s in (
        Site("default", "the training phantom: 60 % contrast-enhanced, 10-20 HU noise, 1-5 mm slices"),
        Site(
            "noncontrast",
            "no intravenous contrast: blood pool 30-50 HU, as dense as nodes and muscle",
            contrast=False,
        ),
        Site(
            "lowdose",
            "ultra-low dose, sharp edge-enhancing kernel: noise std about 6x the default (60-125 HU)",
            noise_scale=4.0,
            kernel_blur_scale=0.5,
            edge_enhance=0.7,
        ),
        Site(
            "sharp",
            "a sharper kernel at a lower dose: noise std about 2x the default, mild edge enhancement",
            noise_scale=2.0,
            kernel_blur_scale=0.7,
            edge_enhance=0.3,
        ),
        Site(
            "thick",
            "5 mm slices, each the average of four 1.25 mm slices (partial volume)",
            slice_mm=5.0,
            pv_subslices=4,
        ),
        Site(
            "habitus",
            "slender patients: mediastinum x0.78 as wide, little fat (1-5 mm under the skin, x0.7 inside),"
            " body x0.85",
            body_scale=0.85,
            fat_mm=(1.0, 5.0),
            mediastinum_width=0.78,
            mediastinal_fat=0.7,
        ),
        Site(
            "nodes",
            "other nodes: conglomerates, irregular, necrotic and calcified nodes, low node-to-fat contrast",
            med_fat_hu=-55.0,
            node_hu_shift=-20.0,
            node_irregularity=2.5,
            cluster=0.5,
            necrotic=0.35,
            calcified=0.25,
        ),
        Site(
            "scanner",
            "another scanner: HU calibration -30 HU and a 30 % wider field of view (coarser pixels)",
            fov_scale=1.3,
            hu_offset=-30.0,
        ),
    )
}

DEFAULT = SITES["default"]


def get_site(name: str | Site) -> Site:
    """The site called ``name`` (a `Site` passes through), or LNQError naming the valid sites."""
    if isinstance(name, Site):
        return name
    try:
        return SITES[name]
    except (KeyError, TypeError):
        raise LNQError(f"unknown phantom site {name!r}; choose one of: {', '.join(SITES)}") from None


__all__ = ["Site", "SITES", "DEFAULT", "get_site"]
