"""The one rule for the ``format_version`` a file of ours records (a workspace's ``workspace.json``, a
model's ``config.json``): a whole number from 1 up, never a text, a fraction, a boolean, 0 or below, and
none newer than this lnq-napari reads."""

from __future__ import annotations

import json
from pathlib import Path

from lnq_napari.errors import LNQError


def check_format_version(version: object, path: str | Path, kind: str, current: int, fix: str,
                         newer: str = "") -> int:
    """``version`` as read from ``path`` (a ``kind`` file, such as "workspace"), when it is a whole number
    from 1 up to ``current`` (the version this lnq-napari writes); else an LNQError in one line: ending in
    ``fix`` (what to do) for a value that is none, or asking for an upgrade (then ``newer``, why) for a
    newer one."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:  # edited by hand
        raise LNQError(f"{path} has format_version {json.dumps(version)}, which is not a valid {kind} format "
                       f"version (a whole number, {current} for this lnq-napari); {fix}")
    if version > current:
        raise LNQError(f"{path} has format_version {version}, newer than this lnq-napari reads ({current}); "
                       f"upgrade lnq-napari (pip install -U lnq-napari){newer}")
    return version
