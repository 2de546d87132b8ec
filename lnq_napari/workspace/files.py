"""What the workspace's files record about themselves: UTC time stamps."""

from __future__ import annotations

import datetime as _dt


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
