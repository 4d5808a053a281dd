"""Layer importance from nHSIC between layer activations (ITPruner, Eq. 9).

The model runs once over the calibration batch in eval mode under no_grad.
Forward hooks hand each prunable layer's output (after its batch norm and
activation, where those follow it directly) to the C++ core as it is produced
and keep only its n x n centred Gram matrix, so one layer's activations are
alive at a time beyond what the forward pass itself holds.

Eq. 9 is ``i_l = exp(-beta * s_l)`` with ``s_l = sum_{j != l} nHSIC(X_l, X_j)``.
The default ``beta = 1 / (max_l s_l - min_l s_l)`` makes the most and least
redundant layers differ by a factor of e, and importances are divided by their
maximum. A scale-free spread of order one is the point: the authors' code used
beta = 243 to 2000 on normalised sums, giving importances of 1e-8 to 1e-24 that
never changed the solver's answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from itpl.method import hsic
from itpl.model.graph import ModelGraph


@dataclass
class Importance:
    """nHSIC matrix and importances of one calibration run.

    Attributes
    ----------
    layers : list of str
        Layer (member) names, the rows of ``nhsic``.
    layer_groups : list of int
        Group index of each layer.
    nhsic : numpy.ndarray
        ``(L, L)`` nHSIC matrix (diagonal 1; a dead layer's row is 0).
    layer_importance : numpy.ndarray
        Eq. 9 per layer, scaled to a maximum of 1; 0 for dead layers.
    group_importance : numpy.ndarray
        Sum of its layers' importances per group: layers that share a width
        share one alpha, so their terms of Eq. 11's ``i^T alpha`` add up.
    group_mean_importance : numpy.ndarray
        Mean of its layers' importances per group: the tilt of the ``log``
        objective (:func:`itpl.method.solve.solve`), whose cost weights already count
        every layer a group's width touches.
    beta : float
        The beta used.
    debiased : bool
        Whether the debiased HSIC estimator was used.
    samples : int
        Calibration samples.
    dead : list of str
        Layers whose activations are constant over the batch (zero Gram).
    """

    layers: list[str]
    layer_groups: list[int]
    nhsic: np.ndarray
    layer_importance: np.ndarray
    group_importance: np.ndarray
    group_mean_importance: np.ndarray
    beta: float
    debiased: bool
    samples: int
    dead: list[str]


def importance_from_nhsic(nhsic_matrix: np.ndarray, beta: float | None = None, dead=None):
    """Eq. 9 on an nHSIC matrix: ``(importance, beta, dead mask)``.

    A layer with a zero Gram (constant output) carries no information: it gets
    importance 0, not the exp(0) = 1 its zero row would give. ``dead`` marks
    such layers (default: a diagonal entry of 0).
    """
    m = np.asarray(nhsic_matrix, dtype=np.float64)
    dead = np.diag(m) <= 0 if dead is None else np.asarray(dead, dtype=bool)
    sums = m.sum(axis=1) - np.diag(m)
    alive = ~dead
    if not alive.any():
        raise ValueError("every captured layer is constant over the calibration data; "
                         "use real images (`data`) rather than constant inputs")
    spread = float(sums[alive].max() - sums[alive].min())
    if beta is None:
        beta = 1.0 / spread if spread > 0 else 0.0
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a non-negative number, got {beta}")
    # exp(-beta (s - min s)) is Eq. 9 divided by its largest value
    importance = np.where(alive, np.exp(-beta * (sums - sums[alive].min())), 0.0)
    return importance, float(beta), dead


def compute_importance(
    graph: ModelGraph,
    inputs: torch.Tensor,
    *,
    debiased: bool = False,
    beta: float | None = None,
    num_threads: int | None = None,
    progress: bool = False,
) -> Importance:
    """Run the calibration batch and compute nHSIC importance per layer and group.

    Parameters
    ----------
    graph : ModelGraph
        From :func:`itpl.model.graph.analyze`.
    inputs : torch.Tensor
        ``(n, *input_shape)`` calibration batch, float32.
    debiased : bool
        Use the debiased HSIC estimator (Song et al. 2012) instead of the
        biased one, which approaches 1 for independent features when n << d.
    beta : float, optional
        Eq. 9's beta; default ``1 / (max s - min s)`` (see module docstring).
    num_threads : int, optional
        Threads for the Gram kernel (default: all cores).
    progress : bool
        Show a progress bar over the captured layers.

    Raises
    ------
    ValueError
        Too few samples, a wrong input shape, an ``ITPL_GRAM_KERNEL`` this CPU
        cannot run, or NaN/Inf activations (naming the layer).
    """
    n = int(inputs.shape[0])
    if n < (4 if debiased else 2):
        raise ValueError(f"need at least {4 if debiased else 2} calibration samples, got {n}")
    if tuple(inputs.shape[1:]) != tuple(graph.input_shape):
        raise ValueError(f"calibration data has sample shape {tuple(inputs.shape[1:])}, "
                         f"the model expects {tuple(graph.input_shape)}")
    hsic.gram_kernel()  # an ITPL_GRAM_KERNEL this CPU cannot run fails here, before the model runs
    layers, layer_groups, capture = [], [], {}
    for group in graph.groups:
        for member, point in zip(group.members, group.capture):
            layers.append(member)
            layer_groups.append(group.index)
            capture.setdefault(point, []).append(len(layers) - 1)
    grams: list[np.ndarray | None] = [None] * len(layers)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(layers), desc="importance", unit="layer", leave=False)

    def hook(point):
        def fn(module, args, output):
            x = output.detach()
            if x.dtype != torch.float32:
                x = x.float()
            try:
                k = hsic.centered_gram(x.contiguous().reshape(n, -1).numpy(),
                                       num_threads=num_threads)
            except ValueError as exc:
                raise ValueError(f"layer '{point}': {exc}") from None
            for idx in capture[point]:
                grams[idx] = k
            if bar is not None:
                bar.update(len(capture[point]))

        return fn

    model = graph.model
    model.eval()
    handles = [graph.module(p).register_forward_hook(hook(p)) for p in capture]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in handles:
            h.remove()
        if bar is not None:
            bar.close()
    missing = [layers[i] for i, k in enumerate(grams) if k is None]
    if missing:
        raise ValueError(f"layer '{missing[0]}' produced no output during the forward pass")
    matrix = hsic.nhsic_matrix(grams, debiased=debiased, num_threads=num_threads)
    dead = [not np.trace(k) > 0 for k in grams]  # a centred Gram is zero only for constant rows
    return _from_nhsic(layers, layer_groups, len(graph.groups), matrix, beta, dead,
                       debiased, n)


def _from_nhsic(layers, layer_groups, groups, matrix, beta, dead, debiased, samples):
    layer_imp, beta, dead = importance_from_nhsic(matrix, beta, dead)
    group_imp = np.zeros(groups)
    np.add.at(group_imp, np.asarray(layer_groups), layer_imp)
    members = np.bincount(np.asarray(layer_groups), minlength=groups)
    return Importance(
        layers=layers, layer_groups=layer_groups, nhsic=matrix, layer_importance=layer_imp,
        group_importance=group_imp, group_mean_importance=group_imp / np.maximum(members, 1),
        beta=beta, debiased=debiased, samples=samples,
        dead=[layers[i] for i in np.flatnonzero(dead)],
    )


def with_beta(importance: Importance, beta: float) -> Importance:
    """The same nHSIC matrix through Eq. 9 with another ``beta`` (no forward pass)."""
    dead = np.isin(importance.layers, importance.dead)
    return _from_nhsic(importance.layers, importance.layer_groups,
                       len(importance.group_importance), importance.nhsic, beta, dead,
                       importance.debiased, importance.samples)
