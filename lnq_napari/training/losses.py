"""Masked losses: only voxels whose state is known (0 or 1) count; unknown (-1) voxels are ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce(logits: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over known voxels (``states`` >= 0); 0 when none is known."""
    known = states >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    target = (states == 1).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return loss[known].mean()


def masked_soft_dice(logits: torch.Tensor, states: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of the node class over known voxels, pooled over the batch."""
    known = (states >= 0).to(logits.dtype)
    prob = torch.sigmoid(logits) * known
    target = (states == 1).to(logits.dtype)
    inter = (prob * target).sum()
    denom = prob.sum() + target.sum()
    return 1.0 - (2.0 * inter + smooth) / (denom + smooth)


def masked_dice_ce(logits: torch.Tensor, states: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """Masked cross-entropy + masked soft Dice, the training loss."""
    return masked_bce(logits, states) + dice_weight * masked_soft_dice(logits, states)


def distillation_bce(logits: torch.Tensor, parent_prob: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """BCE toward the parent's probabilities (soft targets), averaged over ``keep`` voxels (bool, e.g.
    those a reviewer did not edit); 0 when none is kept."""
    if not bool(keep.any()):
        return logits.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits, parent_prob.to(logits.dtype), reduction="none")
    return loss[keep].mean()


def l2sp_penalty(named_parameters, reference: dict[str, torch.Tensor]) -> torch.Tensor:
    """L2-SP: the sum of ``||w - w_ref||^2`` over the parameters named in ``reference``."""
    total = None
    for name, param in named_parameters:
        if name in reference:
            term = (param - reference[name]).pow(2).sum()
            total = term if total is None else total + term
    if total is None:
        raise ValueError("l2sp_penalty: no parameter has a reference weight")
    return total
