"""The optional ``nnunetv2`` dependency: imported lazily, a one-line error naming the extra when missing.

Only nnU-Net's core modules are used (planning, dataset check, trainer, predictor). They do not import
torchvision, which PyPI's ``nnunetv2`` pulls in through ``timm`` and which may fail to import beside a
CPU build of torch ("operator torchvision::nms does not exist"); only nnU-Net's Primus/EVA networks need it.
"""

from __future__ import annotations

import importlib.util

from lnq_napari.errors import LNQError

EXTRA_HINT = "install the extra: pip install 'lnq-napari[nnunet]' (it keeps the installed torch)"


def have_nnunet() -> bool:
    """True when ``nnunetv2`` can be found (it is not imported)."""
    return importlib.util.find_spec("nnunetv2") is not None


def require_nnunet(what: str = "this") -> None:
    """LNQError naming the ``[nnunet]`` extra when ``nnunetv2`` is not installed."""
    if not have_nnunet():
        raise LNQError(f"nnU-Net v2 (nnunetv2) is needed for {what} but is not installed; {EXTRA_HINT}")


def nnunet_version() -> str | None:
    """The installed nnunetv2 version, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nnunetv2")
    except PackageNotFoundError:
        return None
