import json
import math
from pathlib import Path

import numpy as np

from lnq_napari.io.json_text import strict_json


def _strict_load(text: str):
    def refuse(constant):
        raise ValueError(f"not standard JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_undefined_figures_are_null_and_numpy_numbers_plain():
    value = {"dice": math.nan, "assd": math.inf, "cases": [{"recall": np.float32("nan")}, (1.5, -math.inf)],
             "nodes": np.int64(3), "volume": np.float64(2.5), "path": Path("/a/b"), "ok": True, "none": None}
    loaded = _strict_load(strict_json(value))
    assert loaded == {"dice": None, "assd": None, "cases": [{"recall": None}, [1.5, None]], "nodes": 3,
                      "volume": 2.5, "path": "/a/b", "ok": True, "none": None}


def test_finite_figures_survive_exactly():
    value = {"dice": 0.9063437534003824, "n": [1, 2.0, -0.0]}
    assert _strict_load(strict_json(value, indent=None)) == value
