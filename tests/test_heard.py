"""Warnings collected per thread (lnq_napari.heard)."""

from __future__ import annotations

import threading
import warnings

import numpy as np

from lnq_napari import heard


def test_threads_collect_their_own_warnings_and_leave_the_process_as_it_was():
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
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *a, **k: shown.append(str(message))
        with heard.collected_warnings():
            pass
        warnings.warn("outside any block", UserWarning, stacklevel=1)
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


def test_own_warnings_are_heard_whatever_filters_the_process_set_and_the_filter_goes_after(tmp_path):
    """A notebook's simplefilter("ignore") after an earlier lnq-napari call hid a resampled label file's
    GridWarning from the block (compare lists it in its result, the nnU-Net export counts it); once no block
    runs, the process's filters are as it set them."""
    from lnq_napari.io import Volume, read_labels, write_volume

    ct = Volume(np.zeros((4, 8, 8), np.int16), (1.0, 1.0, 2.0))
    coarse = write_volume(tmp_path / "c-seg.nrrd", Volume(np.ones((4, 4, 4), np.uint8), (2.0, 2.0, 2.0)))
    with warnings.catch_warnings():
        with heard.collected_warnings():
            pass  # an earlier call
        warnings.simplefilter("ignore")  # a later notebook cell silences the noise
        before = list(warnings.filters)
        for _ in range(2):  # each time, not once per place
            with heard.collected_warnings() as caught:
                read_labels(coarse, reference=ct)
            assert "resampled onto the CT grid" in " ".join(heard.texts(caught))
        assert warnings.filters == before


def test_a_hook_put_back_by_catch_warnings_forwards_where_it_did():
    """cli.main collects inside its own catch_warnings (its printer as the hook): after it, every warning
    of the process was printed as "lnq-napari: warning: ..." (the forwarding target was one global)."""
    shown, printed = [], []
    with warnings.catch_warnings():
        warnings.showwarning = lambda m, *a, **k: shown.append(str(m))
        with heard.collected_warnings():
            pass
        with warnings.catch_warnings():  # what cli.main does around a command
            warnings.showwarning = lambda m, *a, **k: printed.append(str(m))
            with heard.collected_warnings():
                pass
            warnings.warn("during the command", UserWarning, stacklevel=1)
        warnings.warn("after the command", UserWarning, stacklevel=1)
    assert (shown, printed) == (["after the command"], ["during the command"])


def test_another_thread_swapping_showwarning_takes_no_collected_warning():
    """napari's workers each run in ``catch_warnings`` with their own ``showwarning``: an autosave worker
    started while a Save's worker collected took its notes ("nodes touch") to its own signal, and left
    the process's hook pointing at the finished Save's collector."""
    collecting, swapped, done, got, stolen = (threading.Event(), threading.Event(), threading.Event(),
                                              {}, [])

    def save() -> None:
        with heard.collected_warnings() as caught:
            collecting.set()
            swapped.wait(10)
            warnings.warn("nodes 1 and 2 touch", UserWarning, stacklevel=1)
        got["save"] = heard.texts(caught)
        done.set()

    def autosave() -> None:  # as superqt's WorkerBase.run wraps a worker's work
        collecting.wait(10)
        with warnings.catch_warnings():
            warnings.filterwarnings("always")
            warnings.showwarning = lambda message, *a: stolen.append(str(message))
            swapped.set()
            done.wait(10)

    threads = [threading.Thread(target=f) for f in (save, autosave)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert got == {"save": ["nodes 1 and 2 touch"]} and stolen == []
    shown = []
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *a, **k: shown.append(str(message))
        warnings.warn("later, outside any block", UserWarning, stacklevel=1)
    assert shown == ["later, outside any block"]
