"""PNG figures of a pruning run: the nHSIC matrix (the paper's Fig. 1) and
channels per layer before and after pruning (its Fig. 2). Needs matplotlib."""

from __future__ import annotations

import os

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ValueError("`plot` needs matplotlib: pip install 'itpl[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str, stage=None) -> None:
    from itpl.util.fileio import staged_outputs

    if stage is not None:
        fig.savefig(stage.path(path), dpi=120, bbox_inches="tight", format="png")
        return
    with staged_outputs() as own:
        fig.savefig(own.path(path), dpi=120, bbox_inches="tight", format="png")


def write_plots(result, folder: str, stage=None) -> list[str]:
    """Write ``nhsic.png`` and ``widths.png`` into ``folder``; return their paths.

    With ``stage`` (:func:`itpl.util.fileio.staged_outputs`) they appear together
    with the stage's other files, or not at all.
    """
    plt = _pyplot()
    imp, plan = result.importance, result.plan
    paths = []

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    shown = ax.imshow(imp.nhsic, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, label="nHSIC")
    est = "debiased" if imp.debiased else "biased"
    ax.set_title(f"{plan.model}: nHSIC between layers ({est}, n={imp.samples})")
    ax.set_xlabel("layer")
    ax.set_ylabel("layer")
    paths.append(os.path.join(folder, "nhsic.png"))
    _save(fig, paths[-1], stage)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(plan.groups)), 4))
    x = np.arange(len(plan.groups))
    ax.bar(x, [g.full for g in plan.groups], color="#c8c8c8", label="unpruned")
    ax.bar(x, [g.kept for g in plan.groups], color="#1f77b4", label="pruned")
    ax.set_xlabel("channel group")
    ax.set_ylabel("channels")
    ax.set_title(f"{plan.model}: channels per group, {plan.budget['kind']} "
                 f"{plan.budget['predicted'] / plan.budget['full']:.0%} of unpruned")
    ax.legend()
    paths.append(os.path.join(folder, "widths.png"))
    _save(fig, paths[-1], stage)
    plt.close(fig)
    return paths
