"""What lnq-napari can use of an nnU-Net model folder, from its ``dataset.json`` and ``plans.json``: which
output channel is the lymph node (the way nnU-Net's ``LabelManager`` lays out its outputs), and whether
the CT alone is its input. Needs no nnunetv2.

A model trained on ``lnq-napari export-nnunet`` has ``{"background": 0, "lymph_node": 1, "ignore": 2}``;
a researcher's own may name the label otherwise ("LN", "lymph node", "node"), give it another value
(``{"background": 0, "vessel": 1, "lymph_node": 2}``) or be region-based (sigmoid outputs, one per
region, in the order of ``labels``, no background channel). Taking channel 1 regardless gave another
structure's (or region's) probability as the nodes without a word. Nodes split by station or number
(``lymph_node_4R``, ``LN_station_2R``, ``node_1``) are several node labels: the nodes are their union.
Which names are node labels is :mod:`lnq_napari.io.node_names`' rule for model labels; a label naming
nodes otherwise (``LN_metastatic``) is refused rather than left out of the union.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io.node_names import is_node_label, unreadable_node_label

NODE = "lymph_node"  # the name lnq-napari's export gives the label


def _whole(value):
    """``value`` as nnU-Net's label manager reads it (``int(value)``): text as int() reads it (``"1"``,
    ``" 01 "``; not ``"1.0"``, which nnU-Net refuses), a float that is a whole number (``1.0``) as an int;
    anything else as it is."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def normal_labels(labels: dict) -> dict:
    """``labels`` with whole-number values (and region members) as ints, as nnU-Net takes them; ``ignore``
    as it is (nnU-Net asserts it is an int)."""
    return {k: v if k == "ignore" else [_whole(x) for x in v] if isinstance(v, (list, tuple)) else _whole(v)
            for k, v in labels.items()}


def has_regions(labels: dict) -> bool:
    """True when the labels are region-based (nnU-Net: a value that is a list of more than one label)."""
    return any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())


def argmax_decides(labels) -> bool:
    """True when nnU-Net's argmax over a model's outputs (its ``dataset.json`` ``labels``) can give other
    nodes than the node probability cut at 0.5: more than two softmax outputs (not region-based; ``ignore``
    adds none; two names of one value are one output)."""
    if not isinstance(labels, dict) or has_regions(labels):
        return False
    values = {repr(v[0] if isinstance(v, (list, tuple)) and len(v) == 1 else v)
              for k, v in normal_labels(labels).items() if k != "ignore"}
    return len(values) > 2


def node_labels(labels: dict, folder: str | Path) -> tuple[str, ...]:
    """The names of the lymph-node labels among ``labels`` (``dataset.json`` of the model ``folder``), in
    their order: every label named as nodes (:func:`~lnq_napari.io.node_names.is_node_label`;
    ``lymph_node`` beside ``lymph_node_4R`` is the nodes of no station), the nodes being their union.
    LNQError listing the labels when none is, or when a label names nodes in a way the rule cannot read
    (``LN_metastatic`` beside ``lymph_node``: left out, its nodes were lost without a word)."""
    names = [k for k in labels if k != "ignore"]
    found = tuple(k for k in names if is_node_label(k))
    unread = [k for k in names if unreadable_node_label(k)]
    where = Path(folder) / "dataset.json"
    rename = (f"name each node label {NODE}_<station or number> (e.g. {NODE}_4R, {NODE}_1; {NODE} for "
              "one label of all nodes)")
    if unread and found:
        raise LNQError(f"the nnU-Net model {folder} has labels naming lymph nodes that lnq-napari cannot "
                       f"read as nodes or not: {', '.join(unread)} (beside the node labels "
                       f"{', '.join(found)}, whose union would be the nodes); {rename} and the others so "
                       f"they name no node, in {where} (nnU-Net reads no meaning from the names)")
    if found:
        return found
    unread_note = f"; labels naming nodes it cannot read: {', '.join(unread)}" if unread else ""
    raise LNQError(f"the nnU-Net model {folder} has no lymph-node label in its dataset.json (labels "
                   f"{labels}{unread_note}); {rename} in {where} (nnU-Net reads no meaning from the names)")


@dataclass(frozen=True)
class NodeOutputs:
    """The model outputs that are lymph nodes (``channels``, in nnU-Net's ``LabelManager`` order) and
    whether they are sigmoid regions (``regions``) rather than softmax labels."""

    channels: tuple[int, ...]
    regions: bool = False

    def probability(self, outputs: np.ndarray) -> np.ndarray:
        """The node probability from the model's ``outputs`` (channel first): the node labels' softmax
        summed (the probability of any node), or the voxel-wise maximum of the node regions' sigmoids
        (their union at any threshold)."""
        picked = np.asarray(outputs, dtype=np.float32)[list(self.channels)]
        return picked.max(axis=0) if self.regions else picked.sum(axis=0)

    def argmax_wins(self, outputs: np.ndarray) -> np.ndarray:
        """Where nnU-Net's argmax over all softmax ``outputs`` is a node label (its segmentation, the node
        labels merged)."""
        return np.isin(np.argmax(np.asarray(outputs), axis=0), self.channels)


def node_outputs(dataset: dict, folder: str | Path) -> NodeOutputs:
    """The lymph-node outputs of the model (nnU-Net's ``LabelManager`` order: a softmax channel per label
    value, or a sigmoid channel per region in the order of ``labels`` without background and ``ignore``);
    LNQError when the labels name no lymph node or one is background."""
    labels = dataset.get("labels") if isinstance(dataset, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise LNQError(f"the nnU-Net model {folder} has no labels in its dataset.json; copy dataset.json "
                       "again from the folder nnUNetv2_train wrote")
    labels = normal_labels(labels)
    _check_layout(dataset, labels, folder)
    regions = has_regions(labels)
    outputs = [k for k, v in labels.items() if k != "ignore" and not _is_background(v)] if regions else []
    channels = []
    for name in node_labels(labels, folder):
        value = labels[name]
        if regions and not _is_background(value):
            channels.append(outputs.index(name))
            continue
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        if regions or not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise LNQError(f"the nnU-Net model {folder} gives the lymph-node label '{name}' the value "
                           f"{value!r} in its dataset.json (background or not a label); give it its own "
                           "label value")
        channels.append(value)
    return NodeOutputs(tuple(dict.fromkeys(channels)), regions)  # two names of one value: one output


def _check_layout(dataset: dict, labels: dict, folder: str | Path) -> None:
    """LNQError where nnU-Net's label manager would assert (or predict other outputs than the values name):
    background not 0, an ignore label that is not the highest value, values with gaps, regions without a
    ``regions_class_order`` of one entry each."""
    def ints(value) -> list:
        return list(value) if isinstance(value, (list, tuple)) else [value]

    fix = f"fix {Path(folder) / 'dataset.json'} or copy it again from the folder nnUNetv2_train wrote"
    values = [v for k, value in labels.items() if k != "ignore" for v in ints(value)]
    wrong = [v for v in values if not isinstance(v, int) or isinstance(v, bool)]
    if wrong:
        text = any(isinstance(v, str) for v in wrong)
        raise LNQError(f"the nnU-Net model {folder} has label values that are not whole numbers "
                       f"({', '.join(map(repr, wrong))}; labels {labels}): lnq-napari needs whole-number "
                       "label values" + (" (nnU-Net reads label values with int(), which refuses text such "
                                         "as '1.0')" if text else "") + f"; {fix}")
    if labels.get("background") != 0:
        raise LNQError(f"the nnU-Net model {folder} has no background label 0 in its dataset.json (labels "
                       f"{labels}); {fix}")
    ignore = labels.get("ignore")
    if "ignore" in labels and (not isinstance(ignore, int) or isinstance(ignore, bool)):
        raise LNQError(f"the nnU-Net model {folder} has the ignore label {ignore!r}, not an integer (nnU-Net "
                       f"asserts one: write it as a whole number without quotes or decimals); {fix}")
    if "ignore" in labels and ignore != max(values) + 1:
        raise LNQError(f"the nnU-Net model {folder} has an ignore label that is not the highest label value "
                       f"(labels {labels}), which nnU-Net refuses; {fix}")
    used = sorted(set(values))
    if used != list(range(len(used))):
        raise LNQError(f"the nnU-Net model {folder} has label values {used} that are not 0, 1, 2, ... "
                       f"without gaps (labels {labels}; nnU-Net gives one output per value, in order); {fix}")
    if has_regions(labels):
        regions = [k for k, v in labels.items() if k != "ignore" and not _is_background(v)]
        order = dataset.get("regions_class_order")
        if not isinstance(order, list) or len(order) != len(regions):
            raise LNQError(f"the nnU-Net model {folder} is region-based but its dataset.json has no "
                           f"regions_class_order of {len(regions)} entries (one per region); {fix}")


def _is_background(value) -> bool:
    values = value if isinstance(value, (list, tuple)) else [value]
    return all(v == 0 for v in values)


def same_as_export(dataset: dict) -> bool:
    """True when the model's outputs are laid out as those of a model trained on ``export-nnunet``'s labels
    (background, lymph node at 1, an optional ``ignore``): a fine-tune may keep its output layer."""
    labels = dataset.get("labels") if isinstance(dataset, dict) else None
    if not isinstance(labels, dict) or has_regions(labels):
        return False
    labels = normal_labels(labels)
    try:
        names = node_labels(labels, "")
    except LNQError:
        return False
    rest = {k: v for k, v in labels.items() if k not in ("ignore", *names)}
    return len(names) == 1 and labels[names[0]] in (1, [1]) and rest == {"background": 0}


def check_usable(folder: str | Path) -> NodeOutputs:
    """The lymph-node outputs of the nnU-Net model ``folder`` (:func:`node_outputs`); LNQError when
    lnq-napari cannot predict with it: more input channels than the CT, no node label, or a
    cascade's second stage (its input holds the first stage's segmentation too). Checked before a model is
    loaded or adopted into a workspace (it was registered, then refused at its first prediction)."""
    folder = Path(folder)
    try:
        dataset = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        plans = json.loads((folder / "plans.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LNQError(f"{folder} holds no readable dataset.json and plans.json ({exc}); copy them again "
                       "from the folder nnUNetv2_train wrote") from exc
    # nnU-Net takes the inputs from "modality" before "channel_names" (datasets converted from nnU-Net v1)
    channels = (dataset.get("modality") or dataset.get("channel_names") or {}) if isinstance(dataset, dict) \
        else {}
    if len(channels) != 1:
        raise LNQError(f"the nnU-Net model {folder} takes {len(channels)} input channels "
                       f"({', '.join(map(str, channels.values()))}); lnq-napari gives it the CT alone: "
                       "use a model trained on CT only (`lnq-napari export-nnunet`)")
    previous = previous_stage(plans, folder.name.split("__")[-1])
    if previous:
        raise cascade_error(folder, previous)
    return node_outputs(dataset, folder)


def cascade_error(folder: str | Path, previous: str) -> LNQError:
    """The refusal of a cascade's second stage, whose input holds the ``previous`` stage's segmentation."""
    return LNQError(f"the nnU-Net model {folder} is the second stage of a cascade (it needs the {previous} "
                    f"model's segmentation as input); give the {previous} model folder, or a 3d_fullres one")


def previous_stage(plans: dict, configuration: str) -> str | None:
    """The configuration whose segmentation ``configuration`` of ``plans`` takes as input (a cascade's
    second stage, ``previous_stage`` here or in what it inherits from), else None."""
    configurations = plans.get("configurations", {}) if isinstance(plans, dict) else {}
    seen: set[str] = set()
    while isinstance(configurations.get(configuration), dict) and configuration not in seen:
        seen.add(configuration)
        config = configurations[configuration]
        if config.get("previous_stage"):
            return str(config["previous_stage"])
        configuration = config.get("inherits_from")
    return None
