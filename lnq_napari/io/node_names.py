"""What names or codes a segment as a lymph node, in a DICOM SEG and in a 3D Slicer ``.seg.nrrd`` alike, and
which label names of a model's ``dataset.json`` name lymph nodes (a stricter rule: one model's labels must
say which of them together are all the nodes)."""

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


# --- Model labels -----------------------------------------------------------------------------------------
# Which label names of a model's ``dataset.json`` name lymph nodes: the name rule nnU-Net labels are read
# by (nnU-Net itself reads no meaning from the names). Needs no nnunetv2.
#
# A node label is a node word (:data:`NODE_LABEL_WORDS`), with stations, sides, numbers or places in the chest
# before or after it: ``lymph_node``, ``LN_4R``, ``lymph node station 4R``, ``node_1``, ``LN7``,
# ``lymph_node_4R/4L``, ``subcarinal_lymph_node``, ``hilar_lymph_node_R``. A name that holds a node word
# but says something else of the nodes (``LN_metastatic``, ``lymph_node_12mm``, ``lymph_node_benign``)
# cannot be read as all nodes of a place or as not nodes (:func:`unreadable_node_label`); a name joining
# nodes and another structure (``nodes_and_vessels``) is no node label; ``nodule`` (a lung nodule) holds
# no node word, nor does ``station_4R`` (an atlas model's region).

#: Node words (normalised: lower case, runs of spaces and ``_ - / ( ) ,`` as one ``_``).
NODE_LABEL_WORDS = ("lymph_node", "lymph_nodes", "lymphnode", "lymphnodes", "ln", "lns", "node", "nodes")
#: Places in the chest a node label may name (its nodes those of the place): IASLC station names and sides.
NODE_LABEL_PLACES = ("mediastinal", "mediastinum", "thoracic", "intrathoracic", "subcarinal", "carinal",
                     "hilar", "hilum", "perihilar", "paratracheal", "pretracheal", "retrotracheal",
                     "tracheobronchial", "prevascular", "para", "paraaortic", "aortic", "subaortic",
                     "aortopulmonary", "paraesophageal", "paraoesophageal", "esophageal", "oesophageal",
                     "pulmonary", "ligament", "interlobar", "lobar", "segmental", "subsegmental",
                     "intrapulmonary", "supraclavicular", "upper", "lower", "high", "low", "superior",
                     "inferior", "left", "right", "r", "l")
#: An IASLC station (1-14, a side or 3a/3p, 11Rs/11Ri), with or without the word station: ``4r``,
#: ``station_7``, ``st_10l``, ``r4``, ``3p``.
_STATION = r"(?:(?:station|st|level|lvl)_?)?(?:[rl]_?)?(?:1[0-4]|0?[1-9])(?:[rl][si]?|[abp])?"
_TOKEN = rf"(?:{_STATION}|\d{{1,3}}|{'|'.join(sorted(NODE_LABEL_PLACES, key=len, reverse=True))})"
_BASE = "|".join(sorted(NODE_LABEL_WORDS, key=len, reverse=True))
#: A node label: places or stations, the node word, then stations, numbers, sides or places (the first
#: number may follow the word without a separator: ``ln7``; stations joined by ``and``: ``4r_and_4l``).
_NODE_LABEL = re.compile(rf"(?:{_TOKEN}_)*(?:{_BASE})(?:(?:_|(?=\d)){_TOKEN}(?:_(?:and_)?{_TOKEN})*)?")
_NODE_WORD = re.compile(r"(?<![a-z])(?:lymph_?nodes?|lns?|nodes?)(?![a-z])")
_JOINED = re.compile(r"(?:^|_)(?:and|with|plus)(?:_|$)|[+&]")


def normal(name: str) -> str:
    """``name`` in lower case, runs of spaces and ``_ - / ( ) ,`` as one ``_``, none at either end."""
    return re.sub(r"[\s_\-/(),]+", "_", str(name).strip().lower()).strip("_")


def is_node_label(name: str) -> bool:
    """True for a label named as lymph nodes: a node word (:data:`NODE_LABEL_WORDS`) alone or with stations,
    sides, numbers or places (:data:`NODE_LABEL_PLACES`) before or after it: ``lymph_node_4R``,
    ``LN_station_2R``, ``node_1``, ``LN7``, ``lymph_node_4R/4L``, ``subcarinal_lymph_node``; not
    ``lymph_node_12mm``, ``lnst``, ``nodule``, ``nodes_and_vessels`` nor ``station_4R``."""
    return _NODE_LABEL.fullmatch(normal(name)) is not None


def unreadable_node_label(name: str) -> bool:
    """True for a label whose name holds a node word but that :func:`is_node_label` cannot read (``LN_
    metastatic``, ``lymph_node_benign``, ``lymph_node_12mm``, ``all_lymph_nodes``): its nodes are neither
    surely all nodes of a place nor surely not nodes. A name joining nodes and another structure
    (``nodes_and_vessels``) is not one: it is no node label."""
    name = normal(name)
    return bool(_NODE_WORD.search(name)) and not _JOINED.search(name) and not is_node_label(name)
