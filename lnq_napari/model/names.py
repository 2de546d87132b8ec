"""Short, readable model names for the panel and the command line; the full version string stays in
tooltips and provenance."""

from __future__ import annotations

import re

_HASH = re.compile(r"-[0-9a-f]{8}$")
_STAMP = re.compile(r"^(?P<name>.*?)-(?P<date>\d{8})-(?P<time>\d{4})$")


def short_model_name(version: str | None, limit: int = 32) -> str:
    """A readable alias of a model version: ``lnq-unet 2026-11-27 10:53 +4 ft`` for
    ``lnq-unet-20261127-1053-356336d7+ft-...`` (four fine-tunes). Short versions are kept as they are."""
    if not version:
        return "no model"
    if len(version) <= limit:
        return version
    base, *tunes = version.split("+")
    base = _HASH.sub("", base)
    stamp = _STAMP.match(base)
    if stamp:
        d, t = stamp["date"], stamp["time"]
        base = f"{stamp['name']} {d[:4]}-{d[4:6]}-{d[6:]} {t[:2]}:{t[2:]}"
    alias = base + (f" +{len(tunes)} ft" if tunes else "")
    return alias if len(alias) <= limit else alias[: limit - 3] + "..."
