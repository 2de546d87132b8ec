"""Warnings collected per thread (lnq_napari.heard)."""

from __future__ import annotations

import threading
import warnings

from lnq_napari import heard


def test_threads_collect_their_own_warnings_and_leave_the_process_as_it_was(monkeypatch):
    """Two workers' `catch_warnings` blocks overlapping (suggestions found while a fine-tune ran) left the
    process with every later warning silenced; each thread now collects its own, the rest pass."""
    inside, done, got = threading.Event(), threading.Event(), {}

    def first() -> None:
        with heard.collected_warnings() as caught:
            warnings.warn("first, before", UserWarning, stacklevel=1)
            inside.set()
            done.wait(10)
            warnings.warn("first, after", UserWarning, stacklevel=1)
        got["first"] = heard.texts(caught)

    def second() -> None:
        inside.wait(10)
        with heard.collected_warnings() as caught:
            warnings.warn("second", UserWarning, stacklevel=1)
        got["second"] = heard.texts(caught)
        done.set()

    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert got == {"first": ["first, before", "first, after"], "second": ["second"]}
    shown = []  # outside any block a warning goes where it went before
    monkeypatch.setitem(heard._SHOWN, "before", lambda message, *a, **k: shown.append(str(message)))
    with heard.collected_warnings():
        pass
    heard._show_or_collect("outside any block", UserWarning, __file__, 1)
    assert shown == ["outside any block"]


def test_a_block_keeps_categories_and_a_block_within_collects_its_own():
    """The category stays with each warning (compare tells a resampled SEG by it); a block inside another
    collects what is raised inside it only, and texts() gives each message once."""
    class Special(UserWarning):
        pass

    with heard.collected_warnings() as outer:
        warnings.warn("a", Special, stacklevel=1)
        with heard.collected_warnings() as inner:
            warnings.warn("b", UserWarning, stacklevel=1)
            warnings.warn("b", UserWarning, stacklevel=1)
        warnings.warn("c", UserWarning, stacklevel=1)
    assert [w.category for w in outer] == [Special, UserWarning]
    assert heard.texts(outer) == ["a", "c"]
    assert heard.texts(inner) == ["b"]
