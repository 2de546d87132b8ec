"""Worker processes for the jobs that spread over the CPU cores (export, training data, phantoms): a
``spawn`` pool whose workers end when the program that started them dies (killed with kill -9, its
workers went on writing for minutes, into a folder the next run had to clean); the same for any child
process (:func:`end_with_parent`: nnU-Net's training)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.heard import show_one_line

#: Seconds between a worker's checks that the program that started it is still there.
PARENT_CHECK_S = 1.0


def usable_workers(workers: int) -> int:
    """``workers``, or 1 when spawned processes cannot start here: a program read from stdin (``python -``)
    has no file its workers could import (the pool broke at once)."""
    main = sys.modules.get("__main__")
    source = getattr(main, "__file__", None)
    return int(workers) if source is None or Path(source).is_file() else 1


@contextlib.contextmanager
def broken_pool_said() -> Iterator[None]:
    """A worker pool that broke in this block (a worker died) as one LNQError leading with the cause that
    fits: from a script without a ``__main__`` guard (each spawned worker imports the script, so its calls
    ran again there: ``api.export_nnunet`` from such a script ended in BrokenProcessPool's traceback), that
    guard; else (the CLI, a notebook, a guarded script) a crash or the memory."""
    try:
        yield
    except BrokenProcessPool:
        if unguarded_script() is not None:
            raise LNQError("a worker process stopped before its work was done: in a script, put the calls "
                           "under `if __name__ == \"__main__\":` (each worker imports the script, which ran "
                           "them again there), or the machine ran out of memory; run again, or with "
                           "workers=1") from None
        raise LNQError("a worker process crashed or ran out of memory before its work was done; close other "
                       "programs and run again, or use fewer workers (--workers 1 where the command has it, "
                       "workers=1 in Python)") from None


def unguarded_script() -> Path | None:
    """The user's script this program runs when it has no ``if __name__ == "__main__":`` guard; None for
    the CLI (``python -m lnq_napari``, the ``lnq-napari`` launcher pip writes, which is guarded), a
    notebook or ``python -c`` (no file: workers do not run it again) and a guarded script."""
    source = getattr(sys.modules.get("__main__"), "__file__", None)
    if source is None or Path(__file__).resolve().parent in Path(source).resolve().parents:
        return None
    try:
        text = Path(source).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return None if re.search(r"""^\s*if\s+__name__\s*==\s*['"]__main__['"]""", text, re.M) else Path(source)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that exit when this process is gone and show warnings as
    it does when it shows them in one line (the CLI: a case's resampled labels, not Python's raw format)."""
    import multiprocessing

    one_line = warnings.showwarning is show_one_line
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(), one_line))


def _start_worker(parent: int, one_line: bool) -> None:
    """A worker's start: it ends with ``parent``, and shows warnings in one line if ``one_line``."""
    end_with_parent(parent)
    if one_line:
        warnings.showwarning = show_one_line


def end_with_parent(parent: int) -> None:
    """In a child process: a daemon thread that ends it once ``parent`` is no longer its parent."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="lnq-end-with-parent").start()
