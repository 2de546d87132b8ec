"""Journal: appended entries read back in order, filtered by action, a torn line skipped."""

from __future__ import annotations

from lnq_napari.workspace import Journal


def test_entries_come_back_in_order_and_by_action(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    assert journal.entries() == []
    entry = journal.append("predict", case="a", version="v002")
    journal.append("correction", case="a", edits=3)
    assert entry["action"] == "predict" and entry["time"]
    assert [e["action"] for e in journal.entries()] == ["predict", "correction"]
    assert journal.entries("correction") == [journal.entries()[1]] and journal.entries("x") == []


def test_a_torn_line_from_a_crash_is_skipped_and_the_next_entry_kept(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append("init")
    with open(journal.path, "a") as handle:
        handle.write('{"action": "predi')  # killed mid-append
    journal.append("predict", case="x")
    assert [e["action"] for e in journal.entries()] == ["init", "predict"]
    assert journal.path.read_text().count("\n") == 3
