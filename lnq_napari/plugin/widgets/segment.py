"""Segment: run the model on a CT layer in a worker thread (progress, Cancel); show nodes and suggestions."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from lnq_napari.plugin.widgets._common import LayerCombo, WorkerWidget, compact, folder_row


def default_predictor_factory(model: str | None, device: str):
    from lnq_napari.inference import Predictor

    return Predictor(model=model or None, device=device)


def predict_case(predictor, ct, progress=None, cancel=None) -> tuple:
    """Worker body: prediction -> (one id per node, probabilities, model version, ranked suggestions:
    regions the model is unsure of and nodes whose outline looks incomplete)."""
    from lnq_napari.active import outline_suggestions
    from lnq_napari.interact import label_nodes, rank_suggestions, suggest_candidates

    prediction = predictor.predict(ct, progress=progress, cancel=cancel)
    labels = label_nodes(np.asarray(prediction.mask.array))
    limit = predictor.config.get("inference", {}).get("max_mean_hu")
    candidates = suggest_candidates(prediction.probabilities, prediction.mask, hu=np.asarray(ct.array),
                                    max_mean_hu=limit)
    outlines = outline_suggestions(ct, prediction.mask, prediction.probabilities)
    candidates = rank_suggestions(candidates + outlines)
    return (
        labels,
        np.asarray(prediction.probabilities.array, dtype=np.float32),
        prediction.model_version,
        candidates,
    )


PREDICTION_MODULES = (
    "torch", "safetensors.torch", "SimpleITK", "scipy.ndimage", "scipy.spatial", "skimage.morphology",
    "skimage.segmentation", "pandas", "lnq_napari.inference", "lnq_napari.interact", "lnq_napari.quantify",
)


def _import_inference() -> None:
    """Import what a prediction and its display use, ahead of the first prediction.

    A first import holds Python's lock for up to seconds; done in the worker it would freeze the viewer.
    """
    import importlib

    for name in PREDICTION_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # reported when a prediction is asked for
            return


class SegmentWidget(WorkerWidget):
    """CT layer + model folder -> "nodes" Labels and "suggestions" Points, computed off the GUI thread."""

    def __init__(
        self, napari_viewer, model: str | None = None, predictor_factory: Callable | None = None
    ) -> None:
        from napari.layers import Image

        super().__init__()
        self.viewer = napari_viewer
        self.predictor_factory = predictor_factory or default_predictor_factory
        self._predictor, self._predictor_key = None, None
        self.ct_combo = LayerCombo(napari_viewer, Image, prefer_role="ct")
        self.model_edit = QLineEdit(model or "")
        self.model_edit.setPlaceholderText("bundled model")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.run_button = QPushButton("Find nodes")
        self.run_button.clicked.connect(self.run)
        self.status.setMinimumHeight(3 * self.status.fontMetrics().lineSpacing())  # room for errors
        self.warm_up = threading.Thread(target=_import_inference, daemon=True)
        self.warm_up.start()  # imports take seconds; do them before the user asks for a prediction

        layout = QVBoxLayout(self)
        for label, widget in (("CT", self.ct_combo), ("device", self.device)):
            row = QHBoxLayout()
            row.addWidget(QLabel(label))
            row.addWidget(widget, 1)
            layout.addLayout(row)
        layout.addLayout(folder_row("model", self.model_edit, "Model folder"))
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        compact(self)

    def _get_predictor(self):
        key = (self.model_edit.text().strip(), self.device.currentText())
        if self._predictor is None or key != self._predictor_key:
            self._predictor = self.predictor_factory(key[0] or None, key[1])
            self._predictor_key = key
        return self._predictor

    def run(self):
        """Start the prediction worker for the chosen CT layer; returns the worker (None if none ran)."""
        from napari.qt.threading import create_worker

        from lnq_napari.plugin._layers import layer_volume

        layer = self.ct_combo.layer()
        if layer is None:
            self.status.setText("open a CT first (File > Open, or File > Open Sample > Phantom case)")
            return None
        if self.worker is not None:
            return self.worker
        ct = layer_volume(layer)
        self._cancel.clear()

        def body():
            predictor = self._get_predictor()
            return predict_case(
                predictor, ct, progress=self._signals.changed.emit, cancel=self._cancel.is_set
            )

        connect = {
            "returned": lambda result: self._show(layer, result),
            "errored": self._failed,
            "finished": self._finished,
        }
        self.worker = create_worker(body, _connect=connect, _start_thread=False)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText("predicting ...")
        self.worker.start()
        return self.worker

    def _show(self, ct_layer, result) -> None:
        from lnq_napari.plugin._session import show_prediction

        labels, probabilities, version, candidates = result
        show_prediction(self.viewer, ct_layer, labels, probabilities, version, candidates)
        self.progress.setValue(100)
        self.status.setText(f"{int(labels.max())} nodes, {len(candidates)} suggestions\nmodel {version}")

    def _failed(self, exc: Exception) -> None:
        from lnq_napari.errors import Cancelled

        self.status.setText("cancelled" if isinstance(exc, Cancelled) else f"failed: {exc}")

    def _finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
