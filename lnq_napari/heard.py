"""The warnings one thread raises while a block runs, collected instead of shown: what a job found (no
lungs in view, a resampled SEG, a fine-tune discarded) for its result, status line or batch line.

``warnings.catch_warnings`` cannot do this: it swaps process-wide state, so two threads' blocks
overlapping (suggestions found while a fine-tune ran) left every later warning of the process silenced.
Here each thread collects its own, and other threads' warnings are shown as before. The collector sits in
front of ``warnings._showwarnmsg``, which every shown warning passes through and which ``catch_warnings``
neither saves nor puts back: napari's workers each run in such a block that swaps ``showwarning``, and a
Save's notes went to an autosave worker that started meanwhile (``showwarning`` is hooked instead where a
Python has no ``_showwarnmsg``). So a ``catch_warnings(record=True)`` opened inside a block, in the
collecting thread, records nothing: the block collects it. While any block
runs, lnq-napari's own warnings (every category) are heard each time they are raised, whatever filters
the process set (a notebook's ``simplefilter("ignore")`` hid a resampled SEG from a comparison's result);
other libraries' warnings pass Python's filters as usual (by default, once per place in their code).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from collections.abc import Callable, Iterator

_HEARD = threading.local()  # the warnings a thread is collecting (no attribute: it is not)
_LOCK = threading.Lock()
_BLOCKS = [0]  # blocks running, in every thread: lnq-napari's "always" filter stays while one does
OWN_MODULES = r"lnq_napari(\.|$)"


def _collecting(before: Callable) -> Callable:
    """A ``warnings.showwarning`` that collects in a collecting thread and passes the rest to ``before``
    (the hook it replaces: each keeps its own, so a hook put back by ``catch_warnings`` forwards right)."""
    def show(message, category, filename, lineno, file=None, line=None):
        heard = getattr(_HEARD, "messages", None)
        if heard is not None:
            heard.append(warnings.WarningMessage(message, category, filename, lineno, file, line))
        else:
            before(message, category, filename, lineno, file, line)

    show.lnq_collects = True
    return show


def _collect_first(before: Callable) -> Callable:
    """A ``warnings._showwarnmsg`` that collects in a collecting thread and passes the rest to ``before``."""
    def show(msg: warnings.WarningMessage) -> None:
        heard = getattr(_HEARD, "messages", None)
        if heard is not None:
            heard.append(msg)
        else:
            before(msg)

    show.lnq_collects = True
    return show


def _hook() -> None:
    """Put the collector in place, once per process (under ``_LOCK``)."""
    shown = getattr(warnings, "_showwarnmsg", None)
    if callable(shown):
        if not getattr(shown, "lnq_collects", False):
            warnings._showwarnmsg = _collect_first(shown)
    elif not getattr(warnings.showwarning, "lnq_collects", False):
        warnings.showwarning = _collecting(warnings.showwarning)


def _own_filter(entry: tuple) -> bool:
    """Whether a ``warnings.filters`` entry is the one a block puts first."""
    action, _, category, module, _ = entry
    return action == "always" and category is Warning and getattr(module, "pattern", None) == OWN_MODULES


@contextlib.contextmanager
def collected_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """The warnings raised in this thread while the block runs, in order and not shown (a block within
    another collects its own)."""
    with _LOCK:
        _hook()
        if not (warnings.filters and _own_filter(warnings.filters[0])):
            warnings.filterwarnings("always", category=Warning, module=OWN_MODULES)
        _BLOCKS[0] += 1
    outer = getattr(_HEARD, "messages", None)
    _HEARD.messages = heard = []
    try:
        yield heard
    finally:
        _HEARD.messages = outer
        with _LOCK:
            _BLOCKS[0] -= 1
            if not _BLOCKS[0] and any(_own_filter(f) for f in warnings.filters):
                warnings.filters[:] = [f for f in warnings.filters if not _own_filter(f)]
                getattr(warnings, "_filters_mutated", lambda: None)()  # cached decisions go stale


def texts(heard: list[warnings.WarningMessage]) -> list[str]:
    """The collected warnings' messages, each once, in the order first heard."""
    return list(dict.fromkeys(str(w.message) for w in heard))


def show_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line of its own, printed above a running progress bar (written plainly, a bar's
    redraw overwrote its text and left only the source line): the CLI's ``warnings.showwarning``, and its
    worker processes' (:func:`lnq_napari.processes.process_pool`)."""
    from tqdm import tqdm

    tqdm.write(f"lnq-napari: warning: {message}", file=sys.stderr)
