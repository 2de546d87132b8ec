"""Synthetic chest CT phantoms with complete lymph-node truth and LNQ-style partial labels.

``make_case(seed, shape, spacing, site=...)`` draws one case; ``write_dataset(out, n_cases, seed, site=...)``
writes an LNQ-layout folder. Anatomy is defined in physical mm and sampled on any requested grid.
``SITES`` holds the named CT sources (protocol, scanner, population shifts); "default" is the phantom
the bundled model was trained on.
"""

from lnq_napari.phantom.case import PhantomCase, make_case
from lnq_napari.phantom.dataset import case_seed, write_dataset
from lnq_napari.phantom.sites import SITES, Site, get_site

__all__ = ["PhantomCase", "make_case", "write_dataset", "case_seed", "SITES", "Site", "get_site"]
