"""npe2 sample data: a small phantom case (CT + partial labels, plus the nodes the bundled model finds)."""

from __future__ import annotations

import numpy as np

from lnq_napari.api import NodeResult, find_nodes
from lnq_napari.errors import LNQError
from lnq_napari.io.volume import Volume
from lnq_napari.phantom import make_case
from lnq_napari.plugin._reader import ct_layer_data, labels_layer_data
from lnq_napari.plugin._session import MODEL_KEY, NODES_NAME, PROB_KEY

SAMPLE_SHAPE = (40, 192, 192)
SAMPLE_SPACING = (1.8, 1.8, 4.0)


def phantom_case(seed: int = 0, predict: bool = True) -> list[tuple]:
    """Layer data of a small phantom chest CT, its partial labels and (if a model loads) its nodes."""
    case = make_case(seed, shape=SAMPLE_SHAPE, spacing=SAMPLE_SPACING)
    layers = [
        ct_layer_data(case.ct, name=f"{case.case_id}-ct"),
        labels_layer_data(case.partial, name="partial labels"),
    ]
    result = _try_find_nodes(case.ct) if predict else None
    if result is not None:
        meta = {MODEL_KEY: result.model_version, PROB_KEY: np.asarray(result.probabilities.array)}
        layers.append(labels_layer_data(result.mask, name=NODES_NAME, **meta))
    return layers


def _try_find_nodes(ct: Volume) -> NodeResult | None:
    """The bundled model's nodes, or None when no model can run (the sample still opens)."""
    try:
        return find_nodes(ct, device="cpu")
    except (ImportError, LNQError):
        return None
