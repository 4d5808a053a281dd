"""Quality benchmark: do importance-driven widths beat simpler allocations?

Data (made here, deterministically, no download): "shapes10", 10 classes of
32 x 32 colour images: disk, ring, square, triangle, plus, five-point star,
bar (3:1 rectangle), L, half-disk and crescent. Each image draws, from a
generator seeded by its index:

- background: two colours blended along a random linear gradient, plus a
  sinusoidal texture of random frequency, direction and phase;
- the shape, filled with a random colour (at least 0.4 away from the
  background's mean in RGB), scaled to 45-80% of the image, rotated by any
  angle, centred anywhere that keeps most of it inside;
- a second, smaller distractor shape of a random class in a faint colour;
- Gaussian pixel noise (sigma 0.06 to 0.14).

An unpruned ResNet-20 is trained on it (SGD, cosine schedule). Then at two
budgets, 50% of its FLOPs and 60% of its latency on the local CPU (1 thread),
five allocations are pruned from the same trained model and fine-tuned the
same way: (1) itpl's default (nHSIC importance), (2) the debiased estimator,
(3) zero importance (what the authors' settings amount to), (4) uniform width
scaling, (5) a random allocation meeting the budget. Each seed draws other
calibration images (256) for the importance, another random allocation and
another fine-tuning order. For each allocation, over seeds:
validation accuracy right after pruning (batch-norm statistics re-estimated
on training data), after fine-tuning, and the measured latency.

Bar (issue 7): the default's mean accuracy is at least the uniform's and the
zero-importance allocation's, at both budgets.

    python bench/quality.py [--seeds 3] [--train 6000] [--epochs 10] [--ft-epochs 2] [--json out.json]
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

from itpl.cost import build_cost
from itpl.data import LabelledData
from itpl.devices import get_device
from itpl.export import export_tflite
from itpl.fileio import write_json
from itpl.finetune import FinetuneConfig, evaluate, finetune, reestimate_bn
from itpl.graph import analyze
from itpl.models import build
from itpl.models.source import ModelSource
from itpl.profile import profile_model
from itpl.prune import apply_pruning, select_channels
from itpl.solve import allowed_widths
from itpl.workflow import Budget, prune_model

CLASSES = ["disk", "ring", "square", "triangle", "plus", "star", "bar", "L", "half-disk",
           "crescent"]
SIZE = 32


def _inside(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of shape ``kind`` in its own frame (unit scale, centred at 0)."""
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    if kind == 0:
        return r < 1
    if kind == 1:
        return (r < 1) & (r > 0.6)
    if kind == 2:
        return (np.abs(u) < 0.8) & (np.abs(v) < 0.8)
    if kind == 3:
        return (v > -0.6) & (v < 1.1 - 1.9 * np.abs(u) * 0.95)
    if kind == 4:
        return ((np.abs(u) < 0.3) & (np.abs(v) < 1)) | ((np.abs(v) < 0.3) & (np.abs(u) < 1))
    if kind == 5:
        return r < 0.45 + 0.55 * np.abs(np.cos(2.5 * theta)) ** 3
    if kind == 6:
        return (np.abs(u) < 1) & (np.abs(v) < 0.33)
    if kind == 7:
        return ((u > -0.8) & (u < -0.3) & (np.abs(v) < 0.9)) | \
            ((v > 0.4) & (v < 0.9) & (u > -0.8) & (u < 0.7))
    if kind == 8:
        return (r < 1) & (v > 0)
    return (r < 1) & (np.hypot(u - 0.45, v) > 0.75)


def make_shapes10(n: int, seed: int) -> LabelledData:
    """``n`` images of shapes10 and their labels, from ``seed`` (see the docstring)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    ys, xs = (ys + 0.5) / SIZE * 2 - 1, (xs + 0.5) / SIZE * 2 - 1
    images = np.empty((n, 3, SIZE, SIZE), np.float32)
    labels = np.empty(n, np.int64)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        label = i % 10
        a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        g = np.cos(rng.uniform(0, 2 * np.pi)) * xs + np.sin(rng.uniform(0, 2 * np.pi)) * ys
        w = (g - g.min()) / (np.ptp(g) + 1e-9)
        img = a[:, None, None] * (1 - w) + b[:, None, None] * w
        f, d, p = rng.uniform(2, 8), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        img += rng.uniform(0.03, 0.12) * np.sin(f * (np.cos(d) * xs + np.sin(d) * ys) + p)
        mean_bg = img.mean(axis=(1, 2))
        for kind, scale, colour in _shapes(rng, label, mean_bg):
            cx, cy = rng.uniform(-1 + scale * 0.7, 1 - scale * 0.7, 2)
            t = rng.uniform(0, 2 * np.pi)
            u = (np.cos(t) * (xs - cx) + np.sin(t) * (ys - cy)) / scale
            v = (-np.sin(t) * (xs - cx) + np.cos(t) * (ys - cy)) / scale
            mask = _inside(kind, u, v)
            img[:, mask] = colour[:, None]
        img += rng.normal(0, rng.uniform(0.06, 0.14), img.shape)
        images[i] = ((img - 0.5) / 0.25).astype(np.float32)
        labels[i] = label
    return LabelledData(torch.from_numpy(images), torch.from_numpy(labels), list(CLASSES))


def _shapes(rng, label, mean_bg):
    """(kind, scale, colour): a faint distractor first, then the labelled shape on top."""
    def colour(min_distance):
        while True:
            c = rng.uniform(0, 1, 3)
            if np.linalg.norm(c - mean_bg) >= min_distance:
                return c

    distractor = (int(rng.integers(0, 10)), rng.uniform(0.15, 0.3),
                  0.7 * mean_bg + 0.3 * colour(0.25))
    return [distractor, (label, rng.uniform(0.45, 0.8), colour(0.4))]


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


def allocations(model, data, cost_of, budget, seed, alpha_min=0.1, round_to=8, profile=None):
    """The five allocations of one budget, as widths per group."""
    torch.manual_seed(0)
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:256]
    kw = dict(data=data[pick], profile=profile, alpha_min=alpha_min, round_to=round_to)
    source = ModelSource("resnet20", {"num_classes": 10})
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "w.pt")
        torch.save(model.state_dict(), weights)
        default = prune_model(source, budget, weights=weights, **kw)
        debiased = prune_model(source, budget, weights=weights, debiased=True, **kw)
    widths = np.asarray([g.full for g in default.plan.groups])
    cost = cost_of(analyze(build("resnet20", num_classes=10), (3, SIZE, SIZE)))
    target = default.budget
    ratios = np.random.default_rng(seed).uniform(alpha_min, 1.0, len(widths))
    return {
        "nHSIC (default)": default.allocation.widths,
        "nHSIC debiased": debiased.allocation.widths,
        "zero importance": default.zero_allocation.widths,
        "uniform": _largest_under(cost, target, widths, lambda s: [s] * len(widths),
                                  alpha_min, round_to),
        "random": _largest_under(cost, target, widths, lambda s: np.minimum(1, ratios * s * 2),
                                 alpha_min, round_to),
    }


def pruned_copy(model, widths):
    m = copy.deepcopy(model)
    g = analyze(m, (3, SIZE, SIZE))
    apply_pruning(g, select_channels(g, list(widths), "l1"))
    return m


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train", type=int, default=6000, help="training images")
    p.add_argument("--val", type=int, default=1000, help="validation images")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the unpruned model")
    p.add_argument("--ft-epochs", type=int, default=2, help="fine-tuning epochs")
    p.add_argument("--flops-ratio", type=float, default=0.5)
    p.add_argument("--latency-ratio", type=float, default=0.6)
    p.add_argument("--base-cache", metavar="FILE",
                   help="keep the trained unpruned model here and reuse it on later runs "
                        "(same --train/--epochs/--seed only: nothing checks that)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    start = time.perf_counter()
    train, val = make_shapes10(args.train, 0), make_shapes10(args.val, 1)
    print(f"shapes10: {len(train)} train / {len(val)} val images made in "
          f"{time.perf_counter() - start:.0f} s", flush=True)

    torch.manual_seed(0)
    model = build("resnet20", num_classes=10)
    cached = args.base_cache and os.path.exists(args.base_cache)
    if cached:  # the trained unpruned model of an earlier run with the same settings
        model.load_state_dict(torch.load(args.base_cache, weights_only=True))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            base = FinetuneConfig(epochs=args.epochs, batch_size=64, lr=0.1, warmup_epochs=1)
            finetune(model, train, val, base, os.path.join(tmp, "base"), progress=False)
            model.load_state_dict(torch.load(os.path.join(tmp, "base.pt"), weights_only=True))
        if args.base_cache:
            torch.save(model.state_dict(), args.base_cache)
    unpruned = evaluate(model, val)["top1"]
    print(f"unpruned ResNet-20: val top-1 {unpruned:.1%} after {args.epochs} epochs"
          f"{' (cached)' if cached else ''} "
          f"({time.perf_counter() - start:.0f} s so far)", flush=True)

    device = get_device("local")
    graph = analyze(copy.deepcopy(model), (3, SIZE, SIZE))
    # Multiples of 8, not the CPU's 32-channel tile: at 16/32/64 channels a
    # tile of 32 would leave almost nothing to allocate.
    profile = profile_model(graph, device, name="resnet20", kwargs={"num_classes": 10},
                            max_seconds=0.3, round_to=8)
    budgets = {
        f"{args.flops_ratio:.0%} FLOPs": (Budget("flops", ratio=args.flops_ratio),
                                         lambda g: build_cost(g, "flops"), None, 8),
        f"{args.latency_ratio:.0%} latency": (Budget("latency", ratio=args.latency_ratio),
                                             lambda g: profile.cost(), profile, 8),
    }
    report = {"unpruned_top1": unpruned, "budgets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base_ms = device.time_model(export_tflite(model, (3, SIZE, SIZE),
                                                  os.path.join(tmp, "base.tflite")).path,
                                    threads=1).median_ms
        for name, (budget, cost_of, prof, round_to) in budgets.items():
            rows = {}
            for seed in range(args.seeds):
                allocs = allocations(model, train.images, cost_of, budget, seed,
                                     round_to=round_to, profile=prof)
                for label, widths in allocs.items():  # the shapes behind the accuracies
                    print(f"  {name}, seed {seed}, {label:<16} widths {list(widths)}")
                for label, widths in allocs.items():
                    m = pruned_copy(model, widths)
                    reestimate_bn(m, train)
                    after_prune = evaluate(m, val)["top1"]
                    cfg = FinetuneConfig(epochs=args.ft_epochs, batch_size=64, lr=0.02,
                                         warmup_epochs=0.3, seed=seed)
                    finetune(m, train, val, cfg, os.path.join(tmp, "ft"), progress=False)
                    m.load_state_dict(torch.load(os.path.join(tmp, "ft.pt"), weights_only=True))
                    tuned = evaluate(m, val)["top1"]
                    key = tuple(widths)
                    r = rows.setdefault(label, {"pruned": [], "tuned": [], "ms": {}})
                    r["pruned"].append(after_prune)
                    r["tuned"].append(tuned)
                    if key not in r["ms"]:
                        path = export_tflite(m, (3, SIZE, SIZE), os.path.join(tmp, "m.tflite")).path
                        r["ms"][key] = device.time_model(path, threads=1).median_ms
                print(f"{name}, seed {seed}: done ({time.perf_counter() - start:.0f} s so far)",
                      flush=True)
            print(f"\n{name} (unpruned {unpruned:.1%}, {base_ms:.3f} ms; {args.seeds} seeds, "
                  f"{args.ft_epochs} fine-tuning epochs):")
            print(f"{'allocation':<18} {'after pruning':>16} {'fine-tuned':>16} {'latency':>14}")
            out = {}
            for label, r in rows.items():
                ms = list(r["ms"].values())
                out[label] = {"pruned_mean": float(np.mean(r["pruned"])),
                              "pruned_std": float(np.std(r["pruned"])),
                              "tuned_mean": float(np.mean(r["tuned"])),
                              "tuned_std": float(np.std(r["tuned"])),
                              "latency_ms": float(np.mean(ms)), "latency_ratio": float(np.mean(ms)) / base_ms,
                              "tuned": r["tuned"]}
                o = out[label]
                print(f"{label:<18} {o['pruned_mean']:>9.1%} ±{o['pruned_std']:>5.1%} "
                      f"{o['tuned_mean']:>9.1%} ±{o['tuned_std']:>5.1%} "
                      f"{o['latency_ms']:>7.3f} ms {o['latency_ratio']:>4.0%}")
            d = out["nHSIC (default)"]["tuned_mean"]
            print(f"bar: default {d:.1%} >= uniform {out['uniform']['tuned_mean']:.1%}: "
                  f"{d >= out['uniform']['tuned_mean']}; >= zero importance "
                  f"{out['zero importance']['tuned_mean']:.1%}: "
                  f"{d >= out['zero importance']['tuned_mean']}", flush=True)
            report["budgets"][name] = out
    report["seconds"] = time.perf_counter() - start
    print(f"\ntotal {report['seconds'] / 60:.1f} min")
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)
