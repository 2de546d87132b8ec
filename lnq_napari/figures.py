"""Static pictures of a case: axial slices with nodes overlaid (matplotlib, no display needed)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from lnq_napari.components import label_components
from lnq_napari.io.atomic import atomic_write
from lnq_napari.io.orientation import radiological
from lnq_napari.io.volume import Volume

WINDOW_HU = (-160.0, 240.0)  # mediastinal window


def pick_slices(mask: np.ndarray, n: int = 3) -> list[int]:
    """Axial slices through the largest nodes of ``mask`` (evenly spaced slices when it is empty)."""
    from scipy import ndimage

    labels, count = label_components(mask)
    if count == 0:
        return [int(z) for z in np.linspace(0, mask.shape[0] - 1, n + 2)[1:-1]]
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    order = np.argsort(sizes)[::-1][:n]
    centres = ndimage.center_of_mass(mask > 0, labels, index=(order + 1).tolist())
    return sorted({int(round(c[0])) for c in centres})


def _matplotlib_home() -> None:
    """Before matplotlib's first import: where its settings or cache folder cannot be written (a
    container, a read-only home, no home at all), both go to a temporary folder of ours, so that
    matplotlib does not print its lines on it. Linux and FreeBSD only: elsewhere its folders differ
    between versions (``~/.matplotlib``, ``%LOCALAPPDATA%``), so matplotlib is left to choose."""
    if "matplotlib" in sys.modules or os.environ.get("MPLCONFIGDIR"):
        return
    if not sys.platform.startswith(("linux", "freebsd")):
        return
    try:  # Path.home() raises RuntimeError where HOME is unset and the uid has no passwd entry
        writable = all(_can_write(folder) for folder in _matplotlib_folders())
    except (OSError, RuntimeError):
        writable = False
    if not writable:
        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="lnq-matplotlib-")
        atexit.register(shutil.rmtree, os.environ["MPLCONFIGDIR"], ignore_errors=True)


def _matplotlib_folders() -> list[Path]:
    """matplotlib's settings and cache folders on Linux (XDG, as matplotlib finds them)."""
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return [Path(config) / "matplotlib", Path(cache) / "matplotlib"]


def _can_write(folder: Path) -> bool:
    """True when ``folder`` is, or can be made, a folder we may write in (matplotlib's own test)."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return os.access(folder, os.W_OK) and folder.is_dir()


def overlay_figure(
    ct: Volume, mask: Volume, path: str | Path, truth: Volume | None = None, slices: list[int] | None = None,
    title: str = "",
) -> Path:
    """Save a PNG of axial CT slices with predicted nodes (and truth outlines when given), shown as
    :func:`~lnq_napari.io.orientation.radiological` orients them (``slices`` index that orientation)."""
    _matplotlib_home()
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    ct, mask = radiological(ct), radiological(mask)
    truth = radiological(truth) if truth is not None else None
    slices = slices or pick_slices(mask.array)
    sy, sx = ct.spacing[1], ct.spacing[0]
    fig, axes = plt.subplots(1, len(slices), figsize=(4.2 * len(slices), 4.6), squeeze=False)
    for ax, z in zip(axes[0], slices):
        ax.imshow(ct.array[z], cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], aspect=sy / sx)
        pred = np.ma.masked_equal(mask.array[z] > 0, False)
        ax.imshow(pred, cmap=ListedColormap(["#ff8c00"]), alpha=0.5, aspect=sy / sx)
        if truth is not None and truth.array[z].any():
            ax.contour(truth.array[z] > 0, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(f"slice {z}")
        ax.axis("off")
    legend = "orange: predicted nodes" + ("; cyan: truth" if truth is not None else "")
    fig.suptitle(f"{title}\n{legend}" if title else legend, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
