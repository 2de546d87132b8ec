"""The review session's undo history: steps in order, redo cleared by a new step, no deeper than napari's
labels history, and an action's steps folded into one."""

from __future__ import annotations

from lnq_napari.plugin._history import EditHistory, Step


def _counting(log: list, name: str) -> Step:
    return Step(lambda: log.append(f"undo {name}"), lambda: log.append(f"redo {name}"))


def test_steps_undo_in_order_and_a_new_step_clears_redo():
    log, history = [], EditHistory()
    for name in "abc":
        history.push(_counting(log, name))
    assert history.undo() and history.undo() and log == ["undo c", "undo b"]
    assert history.redo() and log[-1] == "redo b"
    history.push(_counting(log, "d"))
    assert not history.redo()  # c is gone, as in napari's own history
    assert [history.undo() for _ in range(4)] == [True, True, True, False]
    assert log[-3:] == ["undo d", "undo b", "undo a"]


def test_the_history_is_no_deeper_than_its_limit():
    """napari keeps 100 labels steps: a session step beyond them would undo nothing on the labels."""
    log, history = [], EditHistory(limit=2)
    for name in "abc":
        history.push(_counting(log, name))
    assert [history.undo() for _ in range(3)] == [True, True, False] and log == ["undo c", "undo b"]


def test_an_action_s_steps_fold_into_one_even_at_the_limit():
    log, history = [], EditHistory(limit=2)
    history.push(_counting(log, "a"))
    history.push(_counting(log, "b"))
    since = history.top()
    history.push(_counting(log, "paint"))  # the accept's paint pushes out "a"
    history.replace_since(since, _counting(log, "accept"))
    assert [history.undo() for _ in range(3)] == [True, True, False]
    assert log == ["undo accept", "undo b"]


def test_the_saved_state_is_reached_again_by_undo_or_redo_only_while_its_step_is_kept():
    log, history = [], EditHistory(limit=3)
    assert history.at_clean()  # as opened
    history.push(_counting(log, "a"))
    assert not history.at_clean()
    history.undo()
    assert history.at_clean()
    history.redo()
    history.mark_clean()  # saved after "a"
    history.push(_counting(log, "b"))
    assert not history.at_clean()
    history.undo()
    assert history.at_clean()
    history.undo()  # before the save
    assert not history.at_clean()
    history.push(_counting(log, "c"))  # "a" is gone from redo: the saved state is out of reach
    assert not any(history.at_clean() for _ in (history.undo(), history.undo()))


def test_a_saved_state_older_than_the_kept_steps_is_never_reached_again():
    log, history = [], EditHistory(limit=2)
    for name in "abc":  # "a" forgotten: undoing "b" and "c" leaves it on the labels
        history.push(_counting(log, name))
    history.undo()
    history.undo()
    assert history.top() is None and not history.at_clean()


def test_a_step_older_than_an_outside_edit_is_stale_when_undone_or_redone():
    log, history = [], EditHistory()
    history.push(_counting(log, "a"))
    history.outside_edit()  # a mark moved with napari's Points tools
    history.push(_counting(log, "b"))
    history.undo()
    assert not history.stale  # b came after it
    history.undo()
    assert history.stale  # a did not: undoing it may not restore what was there
    history.redo()
    assert history.stale


def test_adopted_steps_undo_after_later_ones_and_the_state_before_them_is_the_saved_one():
    """Strokes napari held before the session began: undone after the session's own steps, redone first."""
    log, history = [], EditHistory()
    history.adopt([_counting(log, "a")], [_counting(log, "b")])
    assert not history.at_clean()  # "a" is an unsaved edit
    assert history.redo() and log == ["redo b"]
    history.push(_counting(log, "c"))
    assert [history.undo() for _ in range(4)] == [True, True, True, False]
    assert log[1:] == ["undo c", "undo b", "undo a"] and history.at_clean()


def test_adopted_steps_that_fill_the_history_leave_the_saved_state_out_of_reach():
    log, history = [], EditHistory(limit=2)
    history.adopt([_counting(log, "a")], [_counting(log, "b")])  # napari may have forgotten older ones
    history.undo()
    assert history.top() is None and not history.at_clean()


def test_a_save_of_an_earlier_position_marks_that_state_clean_not_the_steps_since():
    """A Save runs in the background from a snapshot: steps done meanwhile stay unsaved edits."""
    log, history = [], EditHistory(limit=3)
    history.push(_counting(log, "a"))
    at_save = history.position()
    history.push(_counting(log, "b"))  # while the save runs
    history.mark_clean(at_save)
    assert not history.at_clean()
    history.undo()
    assert history.at_clean()
    history.push(_counting(log, "c"))  # "b" gone from redo; "a" still reached
    history.undo()
    assert history.at_clean()


def test_a_save_position_whose_step_went_meanwhile_is_never_reached_again():
    log, history = [], EditHistory(limit=2)
    at_nothing = history.position()
    for name in "ab":
        history.push(_counting(log, name))
    history.undo()
    history.undo()  # nothing done, as at the save
    history.mark_clean(at_nothing)
    assert history.at_clean()
    for name in "abc":  # "a" forgotten: undoing leaves it on the labels
        history.push(_counting(log, name))
    history.mark_clean(at_nothing)
    assert not any(history.at_clean() for _ in (history.undo(), history.undo()))
    history.push(_counting(log, "d"))
    at_d = history.position()
    history.undo()
    history.push(_counting(log, "e"))  # "d" gone from redo
    history.mark_clean(at_d)
    assert not any(history.at_clean() for _ in (history.undo(), history.undo(), history.redo()))
