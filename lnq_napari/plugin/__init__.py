"""The napari front end: npe2 reader, writer, sample data and the dock widgets.

This is the only package that imports napari, Qt or magicgui. Widgets stay thin: they forward to
:mod:`lnq_napari.interact`, :mod:`lnq_napari.quantify`, :mod:`lnq_napari.inference` and :mod:`lnq_napari.io`.
"""
