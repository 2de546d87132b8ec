"""The warnings one thread raises while a block runs, collected instead of shown: what a job found (no
lungs in view, a resampled SEG, a fine-tune discarded) for its result, status line or batch line.

``warnings.catch_warnings`` cannot do this: it swaps process-wide state, so two threads' blocks
overlapping (suggestions found while a fine-tune ran) left every later warning of the process silenced.
Here each thread collects its own; other threads' warnings are shown as before.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

_HEARD = threading.local()  # the warnings a thread is collecting (no attribute: it is not)
_SHOWN = {"before": None}  # warnings.showwarning as it was before the first collection
_INSTALL = threading.Lock()


def _show_or_collect(message, category, filename, lineno, file=None, line=None):
    heard = getattr(_HEARD, "messages", None)
    if heard is not None:
        heard.append(warnings.WarningMessage(message, category, filename, lineno, file, line))
    else:
        _SHOWN["before"](message, category, filename, lineno, file, line)


@contextlib.contextmanager
def collected_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """The warnings raised in this thread while the block runs, in order and not shown (a block within
    another collects its own). lnq-napari's own warnings are collected each time they are raised, not
    once per place in the code."""
    with _INSTALL:
        if warnings.showwarning is not _show_or_collect:
            _SHOWN["before"] = warnings.showwarning
            warnings.showwarning = _show_or_collect
            warnings.filterwarnings("always", category=UserWarning, module=r"lnq_napari(\.|$)")
    outer = getattr(_HEARD, "messages", None)
    _HEARD.messages = heard = []
    try:
        yield heard
    finally:
        _HEARD.messages = outer


def texts(heard: list[warnings.WarningMessage]) -> list[str]:
    """The collected warnings' messages, each once, in the order first heard."""
    return list(dict.fromkeys(str(w.message) for w in heard))
