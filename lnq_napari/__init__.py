"""lnq-napari: find, measure and correct mediastinal lymph nodes in chest CT.

Importing the package is cheap: no torch, napari or Qt is imported here.
"""

__version__ = "0.1.0"
