"""Quality benchmark: do importance-driven widths beat simpler allocations?

Data: shapes10 (:mod:`itpl.train.shapes10`: 10 classes of 32 x 32 shapes on
textured backgrounds, made here, deterministically, no download).

An unpruned ResNet-20 (or, with ``--model vgg16-quarter``, VGG-16 at a
quarter of its width: 16 to 128 channels, 20M multiply-accumulates) is trained
on it (SGD, cosine schedule, 12 epochs at a peak learning rate of 0.04; for
ResNet-20 at the default settings the weights shipped in
``examples/resnet20-shapes10.pt`` are read instead, ``--train-base`` trains). Then
at two budgets (by default; ``--budgets``), 50% of its FLOPs and 60% of its
latency on the local CPU (1 thread), five allocations are pruned from the
same trained model (channels kept by L1 norm) and fine-tuned the same way (2
epochs, peak learning rate 0.01):

1. itpl's default: nHSIC importance, the ``log`` objective, beta chosen among
   1, 0.5 and 2 times Eq. 9's default by how close each pruned model's
   outputs stay to the unpruned model's on 128 calibration images;
2. the same with the debiased HSIC estimator;
3. zero importance in the paper's linear Eq. 11 (what the authors' settings
   amount to);
4. uniform width scaling: one ratio for every group, rounded to the nearest
   multiples of 8 and filled up to the budget by itpl's greedy repair (itpl
   with equal importances);
5. a random shape (ratios drawn in [0.1, 1]) scaled to the budget.

At the latency budget every allocation's solver runs at goals around the
profile's prediction; all candidates are timed with the unpruned model in
interleaved rounds, and each allocation takes its slowest candidate under the
budget. All five are compared at the same measured latency, chosen the same
way (itpl's own loop, :mod:`itpl.latency.refine`, times one candidate at a time; on a
0.9 ms model the machine's noise between candidates was as large as the
differences between allocations). Each seed draws other calibration images (256) for
the importance, another random shape and another fine-tuning order. Reported
per allocation over seeds: accuracy right after pruning (batch-norm
statistics re-estimated on training data) and after fine-tuning, and the
latency of the pruned models, timed with the unpruned one in 5 interleaved
rounds.

Three image sets come from the generator with different seeds: training
(6000), validation (1000; fine-tuning keeps its best epoch by it) and test
(5000; every accuracy reported). Two fine-tuned allocations disagree on about
10% of images, so on 1000 images the difference between their accuracies
carries about +-1 point of sampling noise (sqrt(0.1 / 1000)); on 5000 about
+-0.45. An earlier version reported validation accuracy on 1000 images and
showed the default 0.8 points behind uniform scaling at 50% FLOPs; on 5000
images (4000 of them new) the same models were 0.3 apart.

Bar (issue 7): the default's mean accuracy is at least the uniform's and the
zero-importance allocation's, at both budgets.

    python bench/quality.py [--model resnet20|vgg16-quarter] [--seeds 3] [--train 6000]
                            [--test 5000] [--epochs 12] [--ft-epochs 2]
                            [--budgets flops:0.5,latency:0.6] [--allocations default,uniform,...]
                            [--base-cache FILE] [--train-base] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time

import numpy as np
import torch

from itpl.budget import budget_of
from itpl.config import PruneConfig
from itpl.deploy.devices import get_device
from itpl.deploy.timing import Timer
from itpl.latency.measure import profile_model
from itpl.latency.runs import WholeModels
from itpl.method.solve import solve
from itpl.method.widths import AllowedWidths, allowed_widths
from itpl.model.cost import build_cost
from itpl.model.graph import analyze
from itpl.model.source import ModelSource
from itpl.model.surgery import pruned_copy
from itpl.model.zoo import build
from itpl.pipeline import prune_model
from itpl.train.finetune import FinetuneConfig, evaluate, finetune, reestimate_bn
from itpl.train.shapes10 import SIZE, make_shapes10
from itpl.util.fileio import write_json

# Models the bench can train: label -> (built-in name, constructor arguments).
MODELS = {
    "resnet20": ("resnet20", {"num_classes": 10}),
    "vgg16-quarter": ("vgg16", {"num_classes": 10, "config": [
        16, 16, "M", 32, 32, "M", 64, 64, 64, "M", 128, 128, 128, "M", 128, 128, 128]}),
}


# --- allocations -----------------------------------------------------------------

def _scaled(widths, ratios, alpha_min, round_to):
    """Widths at ``ratios`` of full, rounded down to allowed widths."""
    out = []
    for w, r in zip(widths, ratios):
        allowed = allowed_widths(w, alpha_min, round_to)
        fit = [a for a in allowed if a <= r * w + 1e-9]
        out.append(int(fit[-1] if fit else allowed[0]))
    return out


def _largest_under(cost, budget, widths, shape_of, alpha_min, round_to):
    """The widths ``shape_of(s)`` with the largest scale s whose cost fits the budget."""
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        w = _scaled(widths, shape_of(mid), alpha_min, round_to)
        if cost(np.asarray(w) / widths) <= budget:
            lo = mid
        else:
            hi = mid
    return _scaled(widths, shape_of(lo), alpha_min, round_to)


# Short names (--allocations) of the five allocations' labels.
ALLOCATIONS = {"default": "nHSIC (default)", "debiased": "nHSIC debiased",
               "zero": "zero importance", "uniform": "uniform", "random": "random"}

# Goals tried for a latency budget, as multiples of the profile's prediction.
GOAL_GRID = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2)


def allocations(model, source, data, cost, budget, seed, *, alpha_min=0.1, round_to=8,
                profile=None, device=None, keep=None):
    """The allocations of one budget (all five, or the labels in ``keep``), as widths per group.

    itpl's default is what :func:`itpl.pipeline.prune_model` solves with its
    importance. For a latency budget with a ``device``, every allocation's
    solver is run at goals around the profile's prediction, all candidates
    and the unpruned model are timed in interleaved rounds, and each
    allocation takes its slowest candidate under the budget: the five are
    compared at the same measured latency, chosen the same way.
    """
    keep = set(ALLOCATIONS.values()) if keep is None else keep
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:256]
    allowed = AllowedWidths(alpha_min, round_to)
    kw = dict(data=data[pick], profile=profile)
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "w.pt")
        torch.save(model.state_dict(), weights)
        default = prune_model(source, budget, weights=weights, config=PruneConfig(widths=allowed),
                              **kw)
        check = default.plan.settings["beta_check"]
        print(f"  beta check (seed {seed}): scales {check['scales']}, KL "
              f"{', '.join(f'{k:.3f}' for k in check['kl'])}: x{check['chosen_scale']:g}")
        debiased = (prune_model(source, budget, weights=weights,
                                config=PruneConfig(widths=allowed, debiased=True), **kw)
                    if ALLOCATIONS["debiased"] in keep else None)
    graph = analyze(copy.deepcopy(model), (3, SIZE, SIZE))
    full = graph.widths
    ratios = np.random.default_rng(seed).uniform(alpha_min, 1.0, len(full))

    def solver(scores, objective="log"):
        return lambda goal: solve(scores, cost, goal, full, allowed=allowed,
                                  objective=objective).widths

    solvers = {
        "nHSIC (default)": solver(default.importance.group_mean_importance),
        "nHSIC debiased": (solver(debiased.importance.group_mean_importance) if debiased
                           else None),
        # Eq. 11 as the authors ran it: linear objective, importance of no weight
        "zero importance": solver(np.zeros(len(full)), "linear"),
        # one ratio for every group, rounded to the nearest allowed widths and
        # filled up to the budget by itpl's greedy repair
        "uniform": solver(np.ones(len(full))),
        "random": lambda goal: _largest_under(cost, goal, np.asarray(full),
                                              lambda s: np.minimum(1, ratios * s * 2),
                                              alpha_min, round_to),
    }
    # as prune_model does: a latency ratio is of the unpruned model as measured in the profile
    goal = budget.resolve(profile.reference["ms"] if budget.kind == "latency" else cost.full())
    assert solvers["nHSIC (default)"](goal) == default.allocation.widths
    solvers = {label: f for label, f in solvers.items() if label in keep}
    if device is None or budget.kind != "latency":
        return {label: solve_for(goal) for label, solve_for in solvers.items()}
    candidates = {label: [] for label in solvers}
    for label, solve_for in solvers.items():
        for f in GOAL_GRID:
            try:
                candidates[label].append(solve_for(goal * f))
            except ValueError:  # below the smallest model
                pass
    ms = time_interleaved(graph, device, [w for c in candidates.values() for w in c], rounds=3)
    target = budget.ratio * ms[tuple(full)]
    out = {}
    for label, widths in candidates.items():
        under = [w for w in widths if ms[tuple(w)] <= target]
        out[label] = (max(under, key=lambda w: ms[tuple(w)]) if under
                      else min(widths, key=lambda w: ms[tuple(w)]))
    return out


def _budgets(text):
    """``flops:0.5,latency:0.6`` -> ``[("flops", 0.5), ("latency", 0.6)]``."""
    out = []
    for item in text.split(","):
        kind, _, ratio = item.partition(":")
        try:
            value = float(ratio)
        except ValueError:
            value = -1.0
        if kind not in ("flops", "latency") or not 0 < value < 1:
            raise argparse.ArgumentTypeError(
                f"'{item}' is not KIND:RATIO with KIND flops or latency and 0 < RATIO < 1")
        out.append((kind, value))
    return out


def _allocation_labels(text):
    """``default,uniform`` -> the labels of those allocations; the default is always kept."""
    names = text.split(",")
    unknown = [n for n in names if n not in ALLOCATIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown allocation '{unknown[0]}'; choose from {','.join(ALLOCATIONS)}")
    return {ALLOCATIONS["default"], *(ALLOCATIONS[n] for n in names)}


def time_interleaved(graph, device, widths_list, rounds=5):
    """Ms of each width list and of the unpruned model, each timed as a ratio to the
    unpruned model in interleaved rounds (itpl.deploy.timing), so the drift cancels."""
    models = list(dict.fromkeys([tuple(graph.widths), *map(tuple, widths_list)]))
    with tempfile.TemporaryDirectory() as tmp:
        whole = WholeModels(graph, 1, tmp)
        paths = [os.path.join(tmp, f"m{i}.tflite") for i in range(len(models))]
        for w, path in zip(models, paths):
            whole.write(list(w), path)
        timer = Timer(device, whole.base, threads=1)
        got = timer.measure(paths, rounds=rounds, precision=0.02)
        ms = timer.spread().ms
    return {w: g.ratio * ms for w, g in zip(models, got)}


# The trained unpruned model shipped for make demo: this bench's recipe (12 epochs
# at 0.04 on the default 6000 training images), run through `itpl finetune`.
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                       "resnet20-shapes10.pt")


class Progress:
    """One line per fine-tuning epoch and per stage, with the time so far: a run
    never goes silent for more than one epoch (about half a minute here)."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self, text: str) -> None:
        print(f"[{(time.perf_counter() - self.start) / 60:5.1f} min] {text}", flush=True)

    def epochs(self, stage: str, total: int):
        return lambda row: self(f"{stage}: epoch {row['epoch']}/{total}, val top-1 "
                                f"{row['val_top1']:.1%}")


def train_base(args, train, val, progress):
    """The unpruned model: shipped, trained here, or read from ``--base-cache``."""
    torch.manual_seed(0)
    name, kwargs = MODELS[args.model]
    model = build(name, **kwargs)
    defaults = (args.model, args.train, args.epochs, args.lr) == ("resnet20", 6000, 12, 0.04)
    source = (args.base_cache if args.base_cache and os.path.exists(args.base_cache) else
              SHIPPED if defaults and not args.train_base and os.path.exists(SHIPPED) else None)
    if source:  # the trained unpruned model of an earlier run with the same settings
        model.load_state_dict(torch.load(source, weights_only=True))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            base = FinetuneConfig(epochs=args.epochs, batch_size=64, lr=args.lr, warmup_epochs=1)
            finetune(model, train, val, base, os.path.join(tmp, "base"), progress=False,
                     on_epoch=progress.epochs(f"training the unpruned {args.model}", args.epochs))
            model.load_state_dict(torch.load(os.path.join(tmp, "base.pt"), weights_only=True))
        if args.base_cache:
            torch.save(model.state_dict(), args.base_cache)
    return model, source


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="resnet20")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train", type=int, default=6000, help="training images")
    p.add_argument("--val", type=int, default=1000,
                   help="validation images (choose the best fine-tuning epoch)")
    p.add_argument("--test", type=int, default=5000, help="test images (every accuracy reported)")
    p.add_argument("--epochs", type=int, default=12, help="epochs of the unpruned model")
    p.add_argument("--lr", type=float, default=0.04,
                   help="peak learning rate of the unpruned model")
    p.add_argument("--ft-epochs", type=int, default=2, help="fine-tuning epochs")
    p.add_argument("--ft-lr", type=float, default=0.01, help="peak learning rate of fine-tuning")
    p.add_argument("--budgets", type=_budgets, default="flops:0.5,latency:0.6",
                   help="comma-separated KIND:RATIO of the unpruned cost, KIND flops or "
                        "latency (default: flops:0.5,latency:0.6)")
    p.add_argument("--allocations", type=_allocation_labels, default=",".join(ALLOCATIONS),
                   help=f"comma-separated subset of {','.join(ALLOCATIONS)} (default: all)")
    p.add_argument("--base-cache", metavar="FILE",
                   help="keep the trained unpruned model here and reuse it on later runs "
                        "(same --train/--epochs/--lr only: nothing checks that)")
    p.add_argument("--train-base", action="store_true",
                   help="train the unpruned ResNet-20 here (5-6 min) instead of loading "
                        "examples/resnet20-shapes10.pt, trained by the same recipe")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    progress = Progress()
    start = progress.start
    train, val = make_shapes10(args.train, 0), make_shapes10(args.val, 1)
    test = make_shapes10(args.test, 2)
    print(f"shapes10: {len(train)} train / {len(val)} val / {len(test)} test images made in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    model, base_from = train_base(args, train, val, progress)
    unpruned = evaluate(model, test)["top1"]
    progress(f"unpruned {args.model}: test top-1 {unpruned:.1%} after {args.epochs} epochs"
             f"{f' (read from {os.path.relpath(base_from)})' if base_from else ''}")

    device = get_device("local")
    graph = analyze(copy.deepcopy(model), (3, SIZE, SIZE))
    source = ModelSource(*MODELS[args.model])
    profile = None
    if any(kind == "latency" for kind, _ in args.budgets):
        # Multiples of 8, not the CPU's 32-channel tile: at 16/32/64 channels a
        # tile of 32 would leave almost nothing to allocate.
        progress("profiling the local CPU")
        profile = profile_model(graph, device, name=source.name, kwargs=source.kwargs,
                                round_to=8)
    budgets = {
        f"{ratio:.0%} {'FLOPs' if kind == 'flops' else kind}": (
            budget_of(kind, ratio=ratio),
            *((build_cost(graph, "flops"), None) if kind == "flops" else (profile.cost(), profile)))
        for kind, ratio in args.budgets
    }
    settings = {**vars(args), "allocations": sorted(args.allocations)}
    report = {"unpruned_top1": unpruned, "settings": settings, "budgets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (budget, cost, prof) in budgets.items():
            rows, pruned = {}, {}
            for seed in range(args.seeds):
                progress(f"{name}, seed {seed}: importance and allocations")
                allocs = allocations(model, source, train.images, cost, budget, seed,
                                     profile=prof, device=device if prof is not None else None,
                                     keep=args.allocations)
                for label, widths in allocs.items():  # the shapes behind the accuracies
                    print(f"  {name}, seed {seed}, {label:<16} widths {list(widths)}")
                for label, widths in allocs.items():
                    key = tuple(widths)
                    if key not in pruned:  # seeds and allocations often share widths
                        m = pruned_copy(model, (3, SIZE, SIZE), widths)
                        reestimate_bn(m, train)
                        pruned[key] = (m, evaluate(m, test)["top1"])
                    m, after_prune = copy.deepcopy(pruned[key][0]), pruned[key][1]
                    cfg = FinetuneConfig(epochs=args.ft_epochs, batch_size=64, lr=args.ft_lr,
                                         warmup_epochs=0.3, seed=seed)
                    finetune(m, train, val, cfg, os.path.join(tmp, "ft"), progress=False,
                             on_epoch=progress.epochs(f"{name}, seed {seed}, fine-tuning "
                                                      f"{label}", args.ft_epochs))
                    m.load_state_dict(torch.load(os.path.join(tmp, "ft.pt"), weights_only=True))
                    r = rows.setdefault(label, {"pruned": [], "tuned": [], "widths": []})
                    r["pruned"].append(after_prune)
                    r["tuned"].append(evaluate(m, test)["top1"])
                    r["widths"].append(list(widths))
                progress(f"{name}, seed {seed}: done")
            progress(f"{name}: timing the pruned models beside the unpruned one")
            ms = time_interleaved(graph, device, [w for r in rows.values() for w in r["widths"]])
            base_ms = ms[tuple(graph.widths)]
            print(f"\n{name} (unpruned {unpruned:.1%}, {base_ms:.3f} ms; {args.seeds} seeds, "
                  f"{args.ft_epochs} fine-tuning epochs):")
            print(f"{'allocation':<18} {'after pruning':>16} {'fine-tuned':>16} {'latency':>16}")
            out = {}
            for label, r in rows.items():
                lat = float(np.mean([ms[tuple(w)] for w in r["widths"]]))
                out[label] = {"pruned_mean": float(np.mean(r["pruned"])),
                              "pruned_std": float(np.std(r["pruned"])),
                              "tuned_mean": float(np.mean(r["tuned"])),
                              "tuned_std": float(np.std(r["tuned"])),
                              "latency_ms": lat, "latency_ratio": lat / base_ms, **r}
                o = out[label]
                print(f"{label:<18} {o['pruned_mean']:>9.1%} ±{o['pruned_std']:>5.1%} "
                      f"{o['tuned_mean']:>9.1%} ±{o['tuned_std']:>5.1%} "
                      f"{o['latency_ms']:>7.3f} ms {o['latency_ratio']:>5.1%}")
            d = out["nHSIC (default)"]["tuned_mean"]
            bar = [f"default {d:.1%} >= {label} {out[label]['tuned_mean']:.1%}: "
                   f"{d >= out[label]['tuned_mean']}"
                   for label in ("uniform", "zero importance") if label in out]
            if bar:
                print(f"bar: {'; '.join(bar)}", flush=True)
            report["budgets"][name] = {"unpruned_ms": base_ms, "allocations": out}
    report["seconds"] = time.perf_counter() - start
    print(f"\ntotal {report['seconds'] / 60:.1f} min")
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)
