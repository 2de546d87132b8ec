"""One place for a count and its noun, used by the command line and the plugin alike."""

from __future__ import annotations

import pytest

from lnq_napari.wording import count


@pytest.mark.parametrize(("n", "said"), [(0, "0 cases"), (1, "1 case"), (2, "2 cases"), (21, "21 cases")])
def test_count_is_singular_for_one_only(n, said):
    assert count(n, "case") == said
