"""nnU-Net's fingerprint extraction and preprocessing run their cases in a ``spawn`` worker pool even when
asked for one process; the spawned child imports torch and nnU-Net afresh (5-20 s on a 2-core CPU) before
it analyses cases that may take milliseconds. :func:`one_process_here` runs such a one-process pool as a
thread of this process instead: the same nnU-Net functions on the same cases, without the start-up.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from multiprocessing.pool import ThreadPool
from types import SimpleNamespace

#: nnU-Net modules (of the pinned nnunetv2) that start ``multiprocessing.get_context("spawn").Pool(n)``.
POOL_MODULES = (
    "nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor",
    "nnunetv2.preprocessing.preprocessors.default_preprocessor",
)


@contextlib.contextmanager
def one_process_here(num_processes: int = 1) -> Iterator[None]:
    """While the block runs, the pools of :data:`POOL_MODULES` are thread pools of this process when
    ``num_processes`` is 1 (with more, nnU-Net's own process pools run in parallel and are kept).
    Not for two threads of one process planning at once: it swaps the modules' ``multiprocessing``."""
    if num_processes != 1:
        yield
        return
    here = SimpleNamespace(get_context=lambda method=None: SimpleNamespace(Pool=ThreadPool))
    modules = []
    for name in POOL_MODULES:  # another nnU-Net than the pinned one may lay them out otherwise: its own pools
        with contextlib.suppress(ImportError):
            module = importlib.import_module(name)
            if hasattr(getattr(module, "multiprocessing", None), "get_context"):
                modules.append(module)
    saved = [module.multiprocessing for module in modules]
    for module in modules:
        module.multiprocessing = here
    try:
        yield
    finally:
        for module, original in zip(modules, saved):
            module.multiprocessing = original
