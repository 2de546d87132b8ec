"""Keeping a fine-tune near its parent model: which weights train, an L2-SP penalty, distillation.

:class:`Anchor` says what to do (from :class:`~lnq_napari.model.config.FinetuneConfig`);
:class:`AnchorTerms` holds what a run needs for it (the parent's network and weights) and adds the terms
to the training loss. Distillation uses the parent's probabilities on the same patch as soft targets,
only on voxels the reviewer did not edit; L2-SP pulls the trainable weights toward the ``original``
model's (the root of the lineage), so that small steps over many rounds cannot add up to forgetting.
"""

from __future__ import annotations

from dataclasses import dataclass

from lnq_napari.errors import LNQError
from lnq_napari.model.checkpoint import load_checkpoint, load_state
from lnq_napari.model.config import TRAINABLE

#: Parameter-name prefixes of the first encoder block(s), trained with ``trainable="norm_first"``.
FIRST_BLOCKS = ("encoders.0.",)


@dataclass(frozen=True)
class Anchor:
    """Ties of a fine-tune to its ``parent`` model folder (distillation) and the lineage's ``original``
    (L2-SP; the parent when None)."""

    parent: str
    distill_weight: float = 0.0
    l2sp_weight: float = 0.0
    trainable: str = "all"
    original: str | None = None


def _is_norm(module) -> bool:
    from torch import nn

    kinds = (nn.modules.instancenorm._InstanceNorm, nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
             nn.LayerNorm)
    return isinstance(module, kinds)


def trainable_parameters(net, trainable: str) -> list:
    """The parameters to optimise; with ``"norm_first"`` only normalisation layers and
    :data:`FIRST_BLOCKS` keep ``requires_grad``, the rest is frozen."""
    if trainable not in TRAINABLE:
        raise LNQError(f"trainable must be one of {', '.join(TRAINABLE)}, got {trainable!r}")
    if trainable == "all":
        return list(net.parameters())
    keep = set()
    for name, module in net.named_modules():
        if _is_norm(module) or any(f"{name}.".startswith(p) for p in FIRST_BLOCKS):
            keep.update(f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False))
    params = []
    for name, param in net.named_parameters():
        param.requires_grad_(name in keep)
        if name in keep:
            params.append(param)
    return params


class AnchorTerms:
    """The anchor's loss terms for one run: the frozen parent network (distillation) and the original's
    weights of the trainable parameters (L2-SP)."""

    def __init__(self, anchor: Anchor, net, device) -> None:
        self.anchor = anchor
        self.parent_net = None
        self.reference: dict = {}
        if anchor.distill_weight > 0:
            self.parent_net, _ = load_checkpoint(anchor.parent, device=str(device))
            self.parent_net.requires_grad_(False)
        if anchor.l2sp_weight > 0:
            state, _ = load_state(anchor.original or anchor.parent)
            self.reference = {name: state[name].to(device) for name, p in net.named_parameters()
                              if p.requires_grad}

    def loss(self, net, images, logits, edited):
        """The weighted distillation and L2-SP terms for one batch (``edited``: bool voxels to skip)."""
        import torch

        from lnq_napari.training.losses import distillation_bce, l2sp_penalty  # torch

        total = logits.new_zeros(())
        if self.parent_net is not None:
            with torch.no_grad():
                target = torch.sigmoid(self.parent_net(images).float())
            total = total + self.anchor.distill_weight * distillation_bce(logits, target, ~edited)
        if self.reference:
            total = total + self.anchor.l2sp_weight * l2sp_penalty(net.named_parameters(), self.reference)
        return total
