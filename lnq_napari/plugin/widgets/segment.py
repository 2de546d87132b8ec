"""Segment: find the nodes of a CT layer in a worker thread (progress, Cancel); show nodes and suggestions.

The form (CT layer, model folder, device, mediastinum region on/off and shown, suggestions cap) is
magicgui; the work is :func:`lnq_napari.api.find_nodes`.
"""

from __future__ import annotations

import atexit
import importlib
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, SpinBox
from qtpy.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout

from lnq_napari import api
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.heard import collected_warnings, texts
from lnq_napari.io.volume import Volume
from lnq_napari.model.config import InferenceConfig
from lnq_napari.model.names import short_model_name
from lnq_napari.plugin._layers import (
    CT_ROLE,
    REGION_ROLE,
    is_ct_layer,
    layer_kwargs,
    layer_volume,
    same_layer,
    unplaced_note,
)
from lnq_napari.plugin._session import show_prediction
from lnq_napari.plugin._view3d import in_2d_only
from lnq_napari.plugin.widgets._common import (
    WorkerWidget,
    compact,
    layer_choice,
    while_alive,
    widen_opened_cts,
)

DEVICES = ("auto", "cpu", "cuda")
REGION_NAME = "mediastinum region"
#: At exit, how long to wait for the warm-up imports (a daemon thread cut off in the middle of importing
#: torch printed a traceback when napari was closed within seconds of opening).
WARM_UP_EXIT_WAIT_S = 30.0
PREDICTION_MODULES = (
    "torch", "safetensors.torch", "SimpleITK", "scipy.ndimage", "scipy.spatial", "skimage.morphology",
    "skimage.segmentation", "pandas",
)


def _import_inference() -> None:
    """Import what a prediction and its display use, ahead of the first prediction.

    A first import holds Python's lock for up to seconds; done in the worker it would freeze the viewer.
    """
    for name in PREDICTION_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # reported when a prediction is asked for
            return


class SegmentWidget(WorkerWidget):
    """CT layer + model folder -> "nodes" Labels and "suggestions" Points, computed off the GUI thread.

    ``predictor_factory(model, device)`` makes the predictor (default ``api.load_predictor``: one of our
    model folders or an nnU-Net v2 result folder); it is kept while the model and device stay the same.
    """

    def __init__(
        self, napari_viewer, model: str | None = None, predictor_factory: Callable | None = None
    ) -> None:
        from napari.layers import Image

        super().__init__()
        self.viewer = napari_viewer
        self.predictor_factory = predictor_factory or (lambda m, d: api.load_predictor(m, device=d))
        self._predictor, self._predictor_key = None, None
        self._followed = model or None  # the model folder the field follows (follow_model)
        self.form = Container(widgets=[
            layer_choice(napari_viewer, Image, prefer_role=CT_ROLE, accept=is_ct_layer, name="ct",
                         label="CT"),
            FileEdit(name="model", label="model", mode="d", nullable=True, value=model or None,
                     tooltip="model folder; empty: the bundled model"),
            ComboBox(name="device", label="device", choices=DEVICES, value="auto"),
            CheckBox(name="region", text="mediastinum only", value=True,
                     tooltip="keep nodes and suggestions inside the lungs' hull grown by the model's "
                             "mediastinum_margin_mm (off when the model sets none)"),
            CheckBox(name="show_region", text="show the region", value=True,
                     tooltip="outline the mediastinum region used in a layer of its own"),
            SpinBox(name="max_suggestions", label="suggestions", min=0, max=200,
                    value=InferenceConfig().max_suggestions, tooltip="at most this many, best first"),
        ])
        self.form.margins = (0, 0, 0, 0)
        self.form.model.line_edit.native.setPlaceholderText("bundled model")
        self.form.model.choose_btn.text = "..."  # narrow: the panel leaves the canvas most of the window
        self.form.model.choose_btn.tooltip = "choose a model folder"
        self.run_button = QPushButton("Find nodes")
        self.run_button.clicked.connect(self.run)
        self.status.setMinimumHeight(3 * self.status.fontMetrics().lineSpacing())  # room for errors
        self._shown = None  # the CT layer the status line speaks of
        while_alive(self, napari_viewer.layers.events.removed, self._forget_removed)
        self.form.ct.changed.connect(self._ct_chosen)
        widen_opened_cts(napari_viewer)  # File > Open, Open Sample
        self.warm_up = threading.Thread(target=_import_inference, daemon=True)
        self.warm_up.start()  # imports take seconds; do them before the user asks for a prediction
        atexit.register(self.warm_up.join, WARM_UP_EXIT_WAIT_S)

        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        compact(self)

    def follow_model(self, model: str | None) -> None:
        """Predict with ``model`` (the workspace's newly active version; None: the bundled model) unless
        the user has chosen another folder than the one followed so far."""
        current = str(self.form.model.value) if self.form.model.value else None
        if _same_folder(current, self._followed):
            # the text as given: FileEdit's setter would make ``nnunet:<folder>?options`` a relative path
            self.form.model.line_edit.value = model or ""
        self._followed = model

    def _get_predictor(self, model: str | None, device: str):
        if self._predictor is None or (model, device) != self._predictor_key:
            self._predictor = self.predictor_factory(model, device)
            self._predictor_key = (model, device)
        return self._predictor

    def run(self):
        """Start the worker for the chosen CT layer; returns the worker (None if none ran)."""
        from napari.qt.threading import create_worker

        layer = self.form.ct.value
        if layer is None:
            self.status.setText("open a CT first (File > Open, or File > Open Sample > Phantom case)")
            return None
        if self.worker is not None:
            return self.worker
        try:
            ct = layer_volume(layer)
        except LNQError as exc:  # not a 3D volume
            self.status.setText(str(exc))
            return None
        model = str(self.form.model.value) if self.form.model.value else None
        device = self.form.device.value
        region, cap = bool(self.form.region.value), int(self.form.max_suggestions.value)
        emit, cancel = self._signals.changed.emit, self._cancel.is_set
        self._cancel.clear()

        def body() -> tuple[api.NodeResult, list[str]]:
            with collected_warnings() as heard:  # no lungs in view, a thin slab: said in the status line
                result = api.find_nodes(ct, self._get_predictor(model, device), progress=emit,
                                        cancel=cancel, region=region, max_suggestions=cap)
            return result, texts(heard)

        connect = {
            "returned": lambda found: self._show(layer, *found),
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

    def _show(self, ct_layer, result: api.NodeResult, notes: list[str] = ()) -> None:
        if ct_layer not in self.viewer.layers:  # another case opened meanwhile: not its nodes
            self.progress.setValue(0)
            self.status.setText(f"{ct_layer.name} was closed before its nodes were found: result dropped; "
                                "Find nodes again on the case on screen")
            return
        if REGION_NAME in self.viewer.layers:
            self.viewer.layers.remove(REGION_NAME)
        if result.region is not None and self.form.show_region.value:
            show_region(self.viewer, result.region, like=ct_layer)
        show_prediction(self.viewer, ct_layer, result)
        self.progress.setValue(100)
        nodes, found = len(result.nodes), len(result.suggestions)
        counts = f"{nodes} node{'s' if nodes != 1 else ''}, {found} suggestion{'s' if found != 1 else ''}"
        if not same_layer(ct_layer, self.form.ct.value):  # another CT opened while these were found
            counts = f"{ct_layer.name}: {counts}"
        lines = [counts,
                 self._region_text(result), f"model {short_model_name(result.model_version)}",
                 unplaced_note(ct_layer), *(f"note: {note}" for note in notes)]
        self.status.setText("\n".join(line for line in lines if line))
        self.status.setToolTip(f"model version {result.model_version}")  # in full, as in the provenance
        self._shown = ct_layer

    def _forget_removed(self, event) -> None:
        """The status line and progress of a CT layer closed (another case opened) go with it."""
        if self._shown is not None and event.value is self._shown:
            self._forget()

    def _ct_chosen(self, layer=None) -> None:
        """Another CT chosen (or opened, File > Open): the status line of the last one's nodes goes (it
        read "8 nodes" under Find nodes for a CT not yet looked at)."""
        if self._shown is not None and layer is not self._shown:
            self._forget()

    def _forget(self) -> None:
        self._shown = None
        self.status.setText("")
        self.status.setToolTip("")
        self.progress.setValue(0)

    def _region_text(self, result: api.NodeResult) -> str:
        if result.region is not None and np.asarray(result.region.array).all():
            return "mediastinum region: none (no lungs in view)"
        if result.region is not None:
            margin = self._predictor.config.inference.mediastinum_margin_mm
            return f"mediastinum region: lungs' hull + {margin:g} mm"
        if not self.form.region.value:
            return "mediastinum region: off"
        return "mediastinum region: off (the model sets no mediastinum_margin_mm)"

    def _failed(self, exc: Exception) -> None:
        self.status.setText("cancelled" if isinstance(exc, Cancelled) else f"failed: {exc}")

    def _finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)


def show_region(viewer, region: Volume, like=None):
    """The region's border on each axial slice as an Image layer (additive cyan, cheap to draw), drawn as
    the layer ``like`` (the CT) is."""
    from scipy import ndimage

    inside = np.asarray(region.array) > 0
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    border = inside & ~ndimage.binary_erosion(inside, in_plane, border_value=1)
    kwargs = layer_kwargs(region, REGION_NAME, role=REGION_ROLE, like=like)
    layer = viewer.add_image(border.astype(np.uint8), colormap="cyan", blending="additive",
                             contrast_limits=(0, 1), opacity=0.7, interpolation2d="nearest", **kwargs)
    in_2d_only(viewer, layer)  # per-slice outlines: in 3D they stacked into a cage over the nodes
    return layer


def _same_folder(a: str | None, b: str | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and Path(a) == Path(b))
