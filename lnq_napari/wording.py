"""Words for counts in status lines and printed summaries, shared by the CLI and the plugin (no Qt here)."""

from __future__ import annotations


def count(n: int, noun: str) -> str:
    """``n`` and its noun, plural unless one: "1 case", "0 cases", "3 cases" (the noun's plural adds "s")."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
