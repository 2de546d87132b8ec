"""Review statistics of a case: its journal line and the summary over a workspace (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace
from lnq_napari.workspace.review_stats import (
    REVIEW_ACTION,
    CaseStats,
    format_seconds,
    log_review,
    summarize,
)


def test_summary_counts_the_last_line_per_case_and_the_median_time():
    entries = [
        {"action": REVIEW_ACTION, "case": "a", "seconds": 100.0, "accepted": 1, "rejected": 0, "clicks": 5,
         "keys": 0},
        {"action": "correction", "case": "a", "version": "v002"},  # other actions are not reviews
        {"action": REVIEW_ACTION, "case": "b", "seconds": 40.0, "accepted": 2, "rejected": 3, "clicks": 0,
         "keys": 9},
        {"action": REVIEW_ACTION, "case": "a", "seconds": 130.0, "accepted": 2, "rejected": 1, "clicks": 6,
         "keys": 1},  # a saved again: this line replaces its first
        {"action": REVIEW_ACTION, "case": "c", "seconds": 70.0, "accepted": 0, "rejected": 0, "clicks": 1,
         "keys": 2},
    ]
    s = summarize(entries)
    assert (s.cases, s.median_seconds) == (3, 70.0)
    assert (s.accepted, s.rejected, s.clicks, s.keys) == (2 + 2 + 0, 1 + 3 + 0, 6 + 0 + 1, 1 + 9 + 2)
    assert "3 cases reviewed, median 1 min 10 s per case" in s.text()
    assert summarize([]).text() == "no case reviewed yet" and summarize([]).median_seconds is None


def test_log_review_writes_a_journal_line_the_summary_reads(tmp_path):
    data = tmp_path / "data"
    seg = np.zeros((6, 12, 10), np.uint8)
    seg[2:4, 3:6, 3:5] = 1
    write_volume(data / "lnq2023-train-0003-ct.nrrd", Volume(np.full(seg.shape, -100, np.int16)))
    write_volume(data / "lnq2023-train-0003-seg.nrrd", Volume(seg))
    ws = Workspace.init(tmp_path / "ws", data)
    stats = CaseStats(started=0.0)
    stats.accepted, stats.rejected, stats.clicks, stats.keys = 3, 2, 4, 7
    entry = log_review(ws, "lnq2023-train-0003", stats, "v002", edits=5)
    lines = Workspace.open(ws.root).journal(REVIEW_ACTION)
    assert lines == [entry]
    assert {k: entry[k] for k in ("case", "accepted", "rejected", "clicks", "keys", "version", "edits")} == {
        "case": "lnq2023-train-0003", "accepted": 3, "rejected": 2, "clicks": 4, "keys": 7, "version": "v002",
        "edits": 5}
    assert entry["seconds"] == pytest.approx(stats.seconds(), abs=5.0) and entry["seconds"] > 0
    assert summarize(lines).cases == 1


def test_format_seconds():
    shown = [format_seconds(s) for s in (None, 4.4, 59.6, 65, 3600)]
    assert shown == ["-", "4 s", "1 min 00 s", "1 min 05 s", "60 min 00 s"]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_review_texts_say_one_click_and_one_key_in_the_singular(n):
    """The Review tab read "1 clicks, 1 keys" and "1 cases reviewed": a count of one takes the singular."""
    word = {1: ""}.get(n, "s")
    stats = CaseStats(accepted=0, rejected=0, clicks=n, keys=n)
    assert f"{n} click{word}, {n} key{word}" in stats.text()
    entries = [{"action": REVIEW_ACTION, "case": f"c{k}", "seconds": 10.0, "accepted": 0, "rejected": 0,
                "clicks": 1, "keys": 1} for k in range(max(n, 1))]
    said = summarize(entries).text()
    assert said.startswith(f"{max(n, 1)} case{'' if max(n, 1) == 1 else 's'} reviewed")
    assert f"{max(n, 1)} click{'' if max(n, 1) == 1 else 's'}, " in said
