"""npe2 sample data: a small phantom case (CT + partial labels, plus a prediction when a model loads)."""

from __future__ import annotations

import numpy as np

from lnq_napari.plugin._reader import ct_layer_data, labels_layer_data

SAMPLE_SHAPE = (40, 192, 192)
SAMPLE_SPACING = (1.8, 1.8, 4.0)


def phantom_case(seed: int = 0, predict: bool = True) -> list[tuple]:
    """Layer data of a small phantom chest CT, its partial labels and (if a model loads) a prediction."""
    from lnq_napari.phantom import make_case

    case = make_case(seed, shape=SAMPLE_SHAPE, spacing=SAMPLE_SPACING)
    layers = [
        ct_layer_data(case.ct, name=f"{case.case_id}-ct"),
        labels_layer_data(case.partial, name="partial labels"),
    ]
    if predict:
        prediction = _try_predict(case.ct)
        if prediction is not None:
            data, kwargs, kind = labels_layer_data(
                prediction.mask,
                name="nodes",
                lnq_model_version=prediction.model_version,
                lnq_probabilities=np.asarray(prediction.probabilities.array),
            )
            layers.append((data, kwargs, kind))
    return layers


def _try_predict(ct):
    """The bundled model's prediction, or None when no model is available."""
    from lnq_napari.errors import LNQError

    try:
        from lnq_napari.inference import Predictor

        return Predictor(device="cpu").predict(ct)
    except (ImportError, LNQError):  # no model shipped (yet): the sample still opens
        return None
