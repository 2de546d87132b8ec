"""The ``lnq-napari`` program: :func:`lnq_napari.cli.main` behind a light start, so that Ctrl-C or SIGTERM
while the program still imports its libraries (seconds on a busy machine) ends it in one line, with no
traceback, as one during the command does."""

from __future__ import annotations

import sys

from lnq_napari.signals import ignore_interrupts, stopped_how, terminate_as_interrupt


def main(argv: list[str] | None = None) -> int:
    """Run the command line; its exit status (130 after Ctrl-C, 143 after SIGTERM while starting). For the
    process's own end only: after the command it ignores Ctrl-C and SIGTERM until the process exits (call
    :func:`lnq_napari.cli.main` from a notebook or a test)."""
    try:
        with terminate_as_interrupt():
            try:
                from lnq_napari.cli import main as cli_main
            except KeyboardInterrupt as exc:  # while importing, before the command began: nothing written
                status = _stopped(exc, " while starting; nothing was changed")
            else:
                status = cli_main(argv)
    except KeyboardInterrupt as exc:  # a second signal while the command reported its first: what the
        status = _stopped(exc, "")  # command left is unknown here, so nothing is claimed about it
    ignore_interrupts()
    return status


def _stopped(exc: KeyboardInterrupt, what: str) -> int:
    """Print the one line of a run stopped by ``exc`` (or by the signal it interrupted); its exit status:
    the first signal's (143 for SIGTERM, 130 for Ctrl-C)."""
    how, status = stopped_how(exc)
    print(f"lnq-napari: {how}{what}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
