"""Losses and the L2 (weight-decay) parameter groups of the breast-level models."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def breast_loss(
    outputs: Mapping[str, torch.Tensor],
    output_labels: Mapping[str, tuple[str, ...]],
    targets: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over (output group, label) of the cross-entropy averaged over the batch.

    For the view-wise cancer model that is the paper's 8 binary cross-entropy terms (CC and MLO
    heads each predict the four labels and are scored separately); for BI-RADS 2 three-way terms.

    Args:
        outputs: group -> logits ``[B, L, K]`` (``L`` labels of the group, ``K`` classes).
        output_labels: group -> the ``L`` label names.
        targets: label name -> class indices ``[B]`` (long).
        mask: group -> ``[B, L]`` bool, the (exam, label) pairs the group predicts when views are
            missing (:meth:`mammokit.models.breast.BreastModel.label_mask`); the others add no loss.
            Each term stays a mean over the whole batch, so the gradient of a label does not grow
            when other exams of the batch miss a view.
    Returns:
        (loss scalar, {"group/label": term value}).
    """
    total = None
    terms: dict[str, float] = {}
    for group, labels in output_labels.items():
        logits = outputs[group]
        if logits.dim() != 3 or logits.shape[1] != len(labels):
            raise ValueError(f"output {group!r} has shape {tuple(logits.shape)}, expected [B, {len(labels)}, K]")
        for j, label in enumerate(labels):
            if mask is None:
                term = F.cross_entropy(logits[:, j, :].float(), targets[label])
            else:
                ce = F.cross_entropy(logits[:, j, :].float(), targets[label], reduction="none")
                term = (ce * mask[group][:, j].to(ce.dtype)).sum() / ce.shape[0]
            terms[f"{group}/{label}"] = float(term.detach())
            total = term if total is None else total + term
    if total is None:
        raise ValueError("model has no outputs to train")
    return total, terms


def l2_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Adam parameter groups: ``weight_decay`` on weights (conv / linear kernels, ndim > 1), none
    on biases and batch-norm parameters ("L2 coefficient 10^-4.5 on weights", paper IV-A.1).

    Why coupled weight decay (``torch.optim.Adam(weight_decay=...)``) and not AdamW or a loss
    term: Adam's ``weight_decay`` adds ``wd * w`` to the gradient, which is exactly the gradient
    of an explicit L2 penalty ``wd / 2 * ||w||^2`` in the loss, i.e. the classic L2
    regularisation the paper names, without materialising the penalty every step.
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim > 1 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
