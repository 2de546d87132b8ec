"""Active-learning fine-tune: plan, split, train, post-train, judge, register and maybe activate a version.

The active model is trained further on a workspace's corrected cases as :class:`FinetuneConfig` says
(label states from :mod:`lnq_napari.training.corrections`, or dense truth; replay of uncorrected cases
or of another data folder; ties to the parent from :mod:`lnq_napari.training.anchor`); then, optionally,
interpolated toward the parent and its post-processing re-fitted (:mod:`lnq_napari.finetuning.posttrain`).
Held-out corrected cases (a fixed split by case id; with fewer than two corrected cases the training
corrections, and the verdict says so) judge it against its parent and the original model of the
lineage with :func:`lnq_napari.activation.decide_activation` (with ``folds`` k >= 2 every case new to
the lineage is held out instead, by one of k fold models trained without it, and the version trains on
all corrected cases); the verdict's reason and figures go into
the registry entry and the journal (``decided_by: "rule"``). Interruptions leave ``models/pending.json``
(the :class:`~lnq_napari.finetuning.plan.FinetunePlan`); ``resume=True`` continues that run.

Modules: :mod:`.plan` (the split and ``pending.json``), :mod:`.workflow` (one run), :mod:`.validation`
(held-out figures, the original model of a lineage), :mod:`.posttrain` (interpolation, post-processing
re-fit).
"""

from lnq_napari.finetuning.plan import FinetunePlan, cross_fit_folds, split_cases
from lnq_napari.finetuning.validation import ValidationMetrics
from lnq_napari.finetuning.workflow import FinetuneResult, finetune_workspace, train_overrides
from lnq_napari.model.config import FinetuneConfig

__all__ = ["FinetuneConfig", "FinetunePlan", "FinetuneResult", "ValidationMetrics", "cross_fit_folds",
           "finetune_workspace", "split_cases", "train_overrides"]
