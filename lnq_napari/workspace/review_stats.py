"""Review statistics of one case (time, suggestions accepted and rejected, clicks, keys) and their
summary over the workspace journal: the data behind "how much time does the model save".

A saved case writes one ``review`` journal line through :meth:`Workspace.log`; no Qt here.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from lnq_napari.wording import count
from lnq_napari.workspace.workspace import Workspace

REVIEW_ACTION = "review"


@dataclass
class CaseStats:
    """What reviewing one case took, counted from the moment it was opened."""

    started: float = field(default_factory=time.monotonic)
    accepted: int = 0
    rejected: int = 0
    clicks: int = 0  # edits made with the mouse (add, remove, accept by clicking a ring)
    keys: int = 0  # review actions done with a key

    def seconds(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started

    def fields(self, now: float | None = None) -> dict:
        """The journal fields (``seconds`` up to ``now``, a ``time.monotonic()``, rounded to 0.1 s)."""
        return {"seconds": round(self.seconds(now), 1), "accepted": self.accepted,
                "rejected": self.rejected, "clicks": self.clicks, "keys": self.keys}

    def text(self) -> str:
        return (f"{format_seconds(self.seconds())}, {self.accepted} accepted, "
                f"{self.rejected} rejected, {count(self.clicks, 'click')}, {count(self.keys, 'key')}")


@dataclass(frozen=True)
class ReviewSummary:
    """Saved reviews of a workspace: the last line per case counts (a case saved twice counts once)."""

    cases: int
    median_seconds: float | None
    accepted: int
    rejected: int
    clicks: int
    keys: int

    def text(self) -> str:
        if not self.cases:
            return "no case reviewed yet"
        median = format_seconds(self.median_seconds)
        return (f"{count(self.cases, 'case')} reviewed, median {median} per case; "
                f"{self.accepted} accepted, {self.rejected} rejected, {count(self.clicks, 'click')}, "
                f"{count(self.keys, 'key')}")


def log_review(workspace: Workspace, case: str, stats: CaseStats, version: str | None, edits: int,
               now: float | None = None) -> dict:
    """Append the ``review`` journal line of a saved ``case`` (its label ``version``; the review's time up
    to ``now``, when Save was pressed, else now); returns the entry."""
    return workspace.log(REVIEW_ACTION, case=case, **stats.fields(now), version=version, edits=int(edits))


def summarize(entries: list[dict]) -> ReviewSummary:
    """Summary of ``review`` journal entries (other actions are ignored)."""
    last: dict[str, dict] = {}
    for entry in entries:
        if entry.get("action", REVIEW_ACTION) == REVIEW_ACTION and "case" in entry:
            last[entry["case"]] = entry
    rows = list(last.values())
    seconds = [float(r["seconds"]) for r in rows if r.get("seconds") is not None]
    return ReviewSummary(
        cases=len(rows), median_seconds=statistics.median(seconds) if seconds else None,
        **{k: sum(int(r.get(k, 0)) for r in rows) for k in ("accepted", "rejected", "clicks", "keys")},
    )


def format_seconds(seconds: float | None) -> str:
    """``"1 min 05 s"``, ``"42 s"``; ``"-"`` for None."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
