"""Follow-up: which nodes grew, shrank, appeared or vanished between a baseline and a follow-up scan.

``register`` aligns the follow-up to the baseline (chest only), ``match`` pairs their nodes one to one,
``recist`` applies RECIST 1.1's lymph-node rules, ``nadir`` sums the targets at scans
between, ``report`` holds the typed result and ``compare`` ties
them together (:func:`compare_nodes`; files and predicted nodes: :func:`lnq_napari.api.compare`).
"""

from lnq_napari.followup.compare import RegistrationWarning, compare_nodes
from lnq_napari.followup.recist import RecistSummary
from lnq_napari.followup.report import ChangeRow, CompareResult, RegistrationQuality, VolumeSummary, write_csv

__all__ = ["compare_nodes", "CompareResult", "ChangeRow", "RecistSummary", "RegistrationQuality",
           "VolumeSummary", "RegistrationWarning", "write_csv"]
