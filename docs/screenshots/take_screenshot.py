"""Remake ``review-bundled.png``: the demo phantom case (or a CT file given) in napari after Find nodes
with the bundled model, in a 1600 x 1000 window with the lnq-napari panel on its Nodes tab (the tab is
``LNQ_TAB``, default Nodes). ``review-keys.png`` is the Correct tab (suggestions and the review keys)
after the N key centred the first suggestion::

    LNQ_TAB=Correct xvfb-run -a -s "-screen 0 1920x1200x24" python docs/screenshots/take_screenshot.py \
        docs/screenshots/review-keys.png

    xvfb-run -a -s "-screen 0 1920x1200x24" python docs/screenshots/take_screenshot.py [OUT.png] [CT]

``review-ctchest4.png`` is the real chest CT that ships with slicerio::

    python docs/screenshots/take_screenshot.py docs/screenshots/review-ctchest4.png \
        "$(python -c 'import slicerio; print(slicerio.get_testdata_file("CTChest4.nrrd"))')"
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("review-bundled.png")
    from qtpy.QtWidgets import QApplication

    from lnq_napari.api import DEMO_SEED
    from lnq_napari.io.readers import write_volume
    from lnq_napari.phantom import make_case
    from lnq_napari.plugin.app import view
    from lnq_napari.plugin.keys import step_suggestion

    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 2:
            ct_path = Path(sys.argv[2])
        else:
            ct_path = write_volume(Path(tmp) / "lnq2023-demo-0001-ct.nrrd",
                                   make_case(DEMO_SEED, case_id="lnq2023-demo-0001").ct)
        viewer = view(ct_path)
        viewer.window._qt_window.resize(1600, 1000)
        app = QApplication.instance()
        panel = viewer.window.dock_widgets["lnq-napari"]
        segment = panel.widgets["Segment"]
        while segment.warm_up.is_alive():
            app.processEvents()
            time.sleep(0.01)
        segment.run()
        while segment.worker is not None:
            app.processEvents()
            time.sleep(0.02)
        nodes = viewer.layers["nodes"]
        counts = np.bincount(np.asarray(nodes.data).ravel())
        if len(counts) > 1:  # show the slice through the middle of the largest predicted node
            z = np.nonzero(nodes.data == int(np.argmax(counts[1:])) + 1)[0]
            viewer.dims.set_point(0, nodes.data_to_world([float(np.median(z)), 0, 0])[0])
        tab = os.environ.get("LNQ_TAB", "Nodes")
        panel.show_tab(tab)
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        viewer.reset_view()  # fill the canvas the panel leaves
        if tab == "Correct":  # what the N key does: the first suggestion, centred
            step_suggestion(viewer, 1)
            viewer.camera.zoom *= 2.0
        for _ in range(100):
            app.processEvents()
            time.sleep(0.02)
        canvas = viewer.window._qt_viewer.canvas.native
        viewer.screenshot(str(out), canvas_only=False)
        print(f"canvas {canvas.width()} of {viewer.window._qt_window.width()} px")
        print(f"wrote {out}: {segment.status.text()!r}")
        viewer.close()


if __name__ == "__main__":
    main()
