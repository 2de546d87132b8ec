"""The ``lnq-napari`` program: :func:`lnq_napari.cli.main` behind a light start, so that Ctrl-C or SIGTERM
while the program still imports its libraries (seconds on a busy machine) ends it in one line, with no
traceback, as one during the command does."""

from __future__ import annotations

import sys

from lnq_napari.errors import Terminated
from lnq_napari.signals import ignore_interrupts, terminate_as_interrupt


def main(argv: list[str] | None = None) -> int:
    """Run the command line; its exit status (130 after Ctrl-C, 143 after SIGTERM while starting). For the
    process's own end only: after the command it ignores Ctrl-C and SIGTERM until the process exits (call
    :func:`lnq_napari.cli.main` from a notebook or a test)."""
    try:
        with terminate_as_interrupt():
            from lnq_napari.cli import main as cli_main
            status = cli_main(argv)
    except KeyboardInterrupt as exc:  # while importing, before the command began: nothing was written
        how, status = ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(f"lnq-napari: {how} while starting; nothing was changed", file=sys.stderr)
    ignore_interrupts()
    return status


if __name__ == "__main__":
    sys.exit(main())
