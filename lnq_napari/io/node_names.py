"""What names or codes a segment as a lymph node, in a DICOM SEG and in a 3D Slicer ``.seg.nrrd`` alike."""

from __future__ import annotations

import re

LYMPH_NODE_CODE = ("59441001", "SCT")  # SNOMED CT "Lymph node structure" (what we write)
#: The codes a segment typed as a lymph node carries: SNOMED CT, and SNOMED RT in older files (3D Slicer
#: before 4.11, dcmqi examples) as (code value, coding scheme).
LYMPH_NODE_CODES = (LYMPH_NODE_CODE, ("T-C4000", "SRT"))
NODE_WORDS = ("lymph", "node")  # a segment named with one is a node, in a DICOM SEG and a .seg.nrrd
#: "LN", radiologists' abbreviation of lymph node, as a word of a segment's name ("LN 4R", "LN7", "LNs").
_NODE_ABBREVIATION = re.compile(r"(?<![a-z])lns?(?![a-z])")
#: The words of a generic segment name, which claims no structure: 3D Slicer's default ``Segment_1``, a
#: label map's ``1`` or ``label_1``, a model's ``mask``, ``prediction`` or ``nnUNet`` (a word, optionally
#: plural, and a number, each optional).
GENERIC_SEGMENT_WORDS = ("segment", "seg", "label", "mask", "prediction", "pred", "nnunet", "output")
_GENERIC_NAME = re.compile(r"(?:(?:" + "|".join(GENERIC_SEGMENT_WORDS) + r")s?[\s_-]*)?\d*", re.IGNORECASE)


def named_like_node(name: str) -> bool:
    """Whether a segment's name says it is a lymph node: a word of :data:`NODE_WORDS` in it, or "LN"
    ("LN 4R", "LN7", "Mediastinal LNs"; "LNQ" or "kiln" not)."""
    lower = name.lower()
    return any(w in lower for w in NODE_WORDS) or _NODE_ABBREVIATION.search(lower) is not None


def generic_segment_name(name: str) -> bool:
    """Whether a segment's name claims no structure (:data:`GENERIC_SEGMENT_WORDS`: "Segment_1", "1",
    "Label 1", "mask", "nnUNet"; "" too): what it holds cannot be told, so it is not named after something
    else."""
    return _GENERIC_NAME.fullmatch(name.strip()) is not None
