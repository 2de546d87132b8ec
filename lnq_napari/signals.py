"""SIGTERM handled as Ctrl-C is, for the command line: :class:`~lnq_napari.errors.Terminated` (a
KeyboardInterrupt) is raised in the main thread, so every ``finally`` and atomic write cleans up as after a
Ctrl-C instead of the process vanishing mid-write. Light: imported before the rest of the program."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from lnq_napari.errors import Terminated


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def stopped_how(exc: KeyboardInterrupt) -> tuple[str, int]:
    """The word and exit status of a run stopped by ``exc``, or by the first signal it interrupted (a Ctrl-C
    while a SIGTERM was being handled): ("terminated", 143) for SIGTERM (:class:`Terminated`),
    ("interrupted", 130) for Ctrl-C."""
    while isinstance(exc.__context__, KeyboardInterrupt):
        exc = exc.__context__
    return ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)


@contextlib.contextmanager
def _sigterm(handler) -> Iterator[None]:
    """While inside: ``handler`` for SIGTERM; the previous handler is put back after (nothing changes
    outside the main thread, where Python cannot set handlers)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def terminate_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """While inside: SIGTERM raises :class:`Terminated`; the previous handler is put back after."""
    return _sigterm(_raise_terminated)


def ignore_interrupts() -> None:
    """From here on Ctrl-C and SIGTERM are ignored: the command is over and its exit status final; a signal
    landing in the interpreter's shutdown (a library's clean-up calling Python from C++) aborted it with a
    C++ 'terminate called' message instead."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    # Forget a Ctrl-C already handled: CPython remembers one that ever escaped code run by a *string*
    # exec()/eval() (dataclasses and scipy import through them) until the next string exec, and under
    # `python -m` re-sends SIGINT to the process at exit (killed by SIGINT, not our 130). Must be a
    # string; with the signals ignored nothing can set it again.
    exec("pass")


def terminate_by_default() -> contextlib.AbstractContextManager[None]:
    """While inside: SIGTERM ends the process at once, as by default (a napari window: its Qt loop would
    turn a :class:`Terminated` into napari's own exit); the previous handler is put back after."""
    return _sigterm(signal.SIG_DFL)
