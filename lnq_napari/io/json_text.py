"""JSON for people and other programs: undefined figures (NaN, infinities) written as ``null``.

Python's ``json`` writes NaN as ``NaN``, which standard JSON has not: jq, JavaScript and most other
readers refuse such a file. Files and printouts meant for users go through :func:`strict_json`; the
workspace's own caches and journal keep NaN (lnq-napari reads them back as numbers).
"""

from __future__ import annotations

import json
import math


def _finite_or_none(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _plain(value):
    """numpy numbers as Python numbers (NaN then cleaned too), anything else unknown as its text."""
    item = getattr(value, "item", None)
    return _finite_or_none(item()) if callable(item) else str(value)


def strict_json(value, indent: int | None = 2) -> str:
    """``value`` as standard JSON text (NaN and infinities as null)."""
    return json.dumps(_finite_or_none(value), indent=indent, default=_plain, allow_nan=False)
