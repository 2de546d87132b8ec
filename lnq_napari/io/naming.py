"""Case ids from file names: ``lnq2023-train-0001-ct.nrrd`` -> ``lnq2023-train-0001``."""

from __future__ import annotations

import re
from pathlib import Path

_CASE_SUFFIXES = (".autosave.seg.nrrd", ".seg.nrrd", ".nrrd", ".nhdr", ".nii.gz", ".nii", ".mha", ".mhd")
_CASE_TAIL = re.compile(r"([-_](ct|seg|full|pred|prob|labels?|mask|nodes))?(\.v\d{3,})?$", re.IGNORECASE)


def case_name(source: str | Path | None, fallback: str = "case") -> str:
    """The case id of an image, label, prediction, version or autosave file name."""
    if not source:
        return fallback
    name = Path(source).name
    for suffix in _CASE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _CASE_TAIL.sub("", name) or fallback
