"""Synthetic chest CT phantoms with complete lymph-node truth and LNQ-style partial labels.

``make_case(seed, shape, spacing)`` draws one case; ``write_dataset(out, n_cases, seed)`` writes an
LNQ-layout folder. Anatomy is defined in physical mm and sampled on any requested grid.
"""

from lnq_napari.phantom.case import PhantomCase, make_case
from lnq_napari.phantom.dataset import case_seed, write_dataset

__all__ = ["PhantomCase", "make_case", "write_dataset", "case_seed"]
