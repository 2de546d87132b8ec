"""The napari front end: npe2 reader, writer, sample data, the dock widgets and the viewer.

This is the only package that imports napari, Qt or magicgui. Widgets stay thin: their work is a call
to :mod:`lnq_napari.api` (or a click through :mod:`lnq_napari.interact`). :func:`lnq_napari.plugin.app.view`
opens a viewer with the widgets docked.
"""
