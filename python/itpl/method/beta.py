"""How far a pruned model's outputs move from the unpruned model's, without labels.

Used to choose how strongly importance tilts the widths (:func:`choose_beta`):
the candidate widths are pruned from the trained model, their batch-norm
statistics re-estimated on the calibration images, and the one whose outputs
stay closest to the unpruned model's (mean KL divergence of the softmax
outputs) is kept. On ResNet-20 (bench/quality.py) this divergence ranked seven
allocations, at 50% FLOPs and at 60% latency, in the same order as their
accuracy after fine-tuning; accuracy right after pruning, once batch norm is
re-estimated, is known to predict accuracy after fine-tuning (Li et al.,
EagleEye, ECCV 2020), and the divergence needs no labels.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

# Calibration images used for the check: enough for batch-norm statistics, and
# each candidate costs two forward passes over them.
CHECK_SAMPLES = 128
BETA_SCALES = (1.0, 0.5, 2.0)  # multiples of the default beta; ties keep the first
log = logging.getLogger(__name__)


def _log_probs(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = [model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    if not all(isinstance(o, torch.Tensor) and o.dim() >= 2 for o in out):
        raise ValueError("the model's output is not a (batch, classes, ...) tensor: cannot "
                         "compare outputs; pass `beta` to fix the importance strength")
    return torch.log_softmax(torch.cat(out).double(), dim=1)


def output_divergence(reference: nn.Module, pruned: nn.Module, images: torch.Tensor,
                      batch_size: int = 64) -> float:
    """Mean KL(reference || pruned) of softmax outputs on ``images``.

    ``pruned``'s batch-norm statistics are first re-estimated on ``images``
    (in place): pruning keeps each surviving channel's statistics, measured
    with the removed channels still feeding it. ``reference`` is only run in
    eval mode.
    """
    from itpl.train.finetune import reestimate_bn_on

    reestimate_bn_on(pruned, images, batch_size=batch_size)
    reference.eval()
    with torch.no_grad():
        p = _log_probs(reference, images, batch_size)
        if not bool(torch.isfinite(p).all()):
            raise ValueError("the unpruned model's outputs are NaN or Inf on the calibration "
                             "images: check the weights and the data (or pass `beta_scales` 1)")
        q = _log_probs(pruned, images, batch_size)
    kl = float((p.exp() * (p - q)).sum(dim=1).mean())
    return kl if np.isfinite(kl) else float("inf")  # a pruned model that breaks is the worst


def choose_beta(model: nn.Module, importance, widths_for, prune_copy, images: torch.Tensor,
                scales=BETA_SCALES, progress: bool = False):
    """The beta among ``scales`` x the default whose widths keep the outputs closest.

    Parameters
    ----------
    model : nn.Module
        The unpruned model: only run, in eval mode.
    importance : Importance
        From :func:`itpl.method.importance.compute_importance` at the default beta.
    widths_for : callable
        ``widths_for(importance) -> list of int``, the solver at the budget.
    prune_copy : callable
        ``prune_copy(widths) -> nn.Module``, a pruned copy of ``model``.
    images : torch.Tensor
        Calibration images; the first :data:`CHECK_SAMPLES` are used.
    scales : sequence of float
        Multiples of the default beta to try; ties keep the earliest.

    Returns
    -------
    (Importance, dict)
        The chosen importance and a record of the check (scales, betas,
        widths, divergences, chosen scale) for the plan.
    """
    from itpl.method.importance import with_beta

    images = images[:CHECK_SAMPLES]
    candidates = [with_beta(importance, importance.beta * s) for s in scales]
    widths = [list(widths_for(c)) for c in candidates]
    divergence = {}
    for w in widths:
        key = tuple(w)
        if key not in divergence:  # scales often give the same widths
            if progress:
                log.info("checking widths %s on %d images", w, len(images))
            divergence[key] = output_divergence(model, prune_copy(w), images)
    kl = [divergence[tuple(w)] for w in widths]
    if not np.isfinite(min(kl)):
        raise ValueError("every pruned candidate's outputs are NaN or Inf on the calibration "
                         "images; pass `beta` to skip the output check")
    best = int(np.argmin(kl))
    record = {"scales": list(scales), "betas": [c.beta for c in candidates], "widths": widths,
              "kl": kl, "chosen_scale": scales[best], "samples": len(images)}
    return candidates[best], record
