"""What rounded Gram products do to the method: nHSIC, importances and plans, per kernel.

The avx512vnni kernel quantizes float32 activations to 8 bits per block of
features, and the avx512bf16 kernel rounds them to bf16, before their products
(hsic.py, Precision). This script compares one of them (default: avx512vnni)
with an exact float32 kernel on
the quantities ITPruner uses, next to the sampling noise of nHSIC itself:

  ResNet-20 trained on shapes10 (examples/resnet20-shapes10.pt, data from
  examples/shapes10.py), n calibration images (default 256):
    - with outliers: the nHSIC matrix from each kernel against float64 on the
      layers' activations with one value per 256-feature block set to 10x and
      50x the layer's largest
    - the nHSIC matrix and layer importances from each kernel on the batch
      `itpl prune` draws (--seed 0), and on two more batches disjoint from
      each other; max |difference| between kernels on one batch, and between
      the two disjoint batches with the float32 kernel (sampling noise)
    - the widths `itpl prune` chooses at --flops-ratio 0.5 and, with a device
      profile (itpl profile ... --round-to 8, as make demo), --latency-ratio
      0.6, run as the CLI with ITPL_GRAM_KERNEL set to each kernel
  MobileNetV1 (random weights) on bench_prune.py's random inputs: the nHSIC
  matrix and importances per kernel, against a second random batch.

    python bench/gram_precision.py --data OUT/train.pt [--profile r20.profile.json]
        [--kernels avx512,avx512vnni] [--samples 256] [--mobilenet-samples 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from itpl.method import hsic
from itpl.method.importance import compute_importance
from itpl.model.graph import analyze
from itpl.model.source import ModelSource
from itpl.model.zoo import BUILTIN, build
from itpl.pipeline import load_model
from itpl.train.data import load_calibration, preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "examples", "resnet20-shapes10.pt")


def importance_with(kernel, graph, x):
    before = os.environ.get(hsic.KERNEL_ENV)
    os.environ[hsic.KERNEL_ENV] = kernel
    try:
        return compute_importance(graph, x)
    finally:
        if before is None:
            del os.environ[hsic.KERNEL_ENV]
        else:
            os.environ[hsic.KERNEL_ENV] = before


def off_diagonal_max(a, b):
    d = np.abs(a - b)
    np.fill_diagonal(d, 0)
    return float(d.max())


def compare(graph, batches, kernels):
    """nHSIC and importance per batch and kernel; kernel and sampling differences."""
    exact, rounded = kernels
    runs = {name: {k: importance_with(k, graph, x) for k in kernels} for name, x in batches.items()}
    out = {"layers": len(runs[next(iter(runs))][exact].layers), "kernel": {}, "sampling": {}}
    for name, r in runs.items():
        out["kernel"][name] = {
            "nhsic_max_abs_diff": off_diagonal_max(r[exact].nhsic, r[rounded].nhsic),
            "importance_max_abs_diff": float(np.abs(r[exact].layer_importance
                                                    - r[rounded].layer_importance).max()),
        }
    names = [n for n in runs if n != "prune batch"]
    a, b = runs[names[0]][exact], runs[names[1]][exact]
    out["sampling"] = {
        "batches": names,
        "nhsic_max_abs_diff": off_diagonal_max(a.nhsic, b.nhsic),
        "nhsic_median_abs_diff": float(np.median(np.abs(a.nhsic - b.nhsic)[
            ~np.eye(len(a.nhsic), dtype=bool)])),
        "importance_max_abs_diff": float(np.abs(a.layer_importance - b.layer_importance).max()),
    }
    return out


def with_outliers(graph, x, kernels, factors=(10, 50)):
    """nHSIC of each kernel against float64 on the layers' activations with one
    value per 256-feature block set to `factor` x the layer's largest (one
    random sample each): how an extreme value moves a rounding kernel."""
    points = list(dict.fromkeys(p for g in graph.groups for p in g.capture))
    acts = {}
    hooks = [graph.module(p).register_forward_hook(
        lambda m, a, out, p=p: acts.__setitem__(p, out.detach().reshape(len(x), -1).numpy().copy()))
        for p in points]
    with torch.no_grad():
        graph.model.eval()(x)
    for h in hooks:
        h.remove()
    rng = np.random.default_rng(0)
    out = {}
    for factor in factors:
        layers = []
        for p in points:
            a = acts[p].copy()
            top = float(np.abs(a).max())
            for c in range(0, a.shape[1], 256):
                a[rng.integers(len(a)), c + rng.integers(min(256, a.shape[1] - c))] = factor * top
            layers.append(a)
        exact = hsic.nhsic_matrix([hsic.centered_gram(a.astype(np.float64)) for a in layers])
        out[f"x{factor}"] = {k: off_diagonal_max(exact, hsic.nhsic_matrix(
            [hsic.centered_gram(a, kernel=k) for a in layers])) for k in kernels}
    return out


def cli_widths(kernel, budget_args, data, samples, tmp):
    prefix = os.path.join(tmp, f"{kernel}-{'-'.join(budget_args).replace('--', '')}")
    cmd = [sys.executable, "-m", "itpl", "prune", "--model", "resnet20", "--model-arg",
           "num_classes=10", "--weights", WEIGHTS, *budget_args, "--data", data, "--samples",
           str(samples), "-o", prefix, "-q"]
    env = dict(os.environ, **{hsic.KERNEL_ENV: kernel})
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stderr}")
    with open(prefix + ".plan.json") as f:
        plan = json.load(f)
    return [g["kept"] for g in plan["groups"]], [round(g["importance"], 6) for g in plan["groups"]]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="shapes10 train.pt (examples/shapes10.py)")
    p.add_argument("--profile", help="ResNet-20 device profile for --latency-ratio 0.6")
    p.add_argument("--kernels", default="avx512,avx512vnni",
                   help="exact kernel, rounding kernel (default avx512,avx512vnni)")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--mobilenet-samples", type=int, default=256, help="0 skips MobileNetV1")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    kernels = args.kernels.split(",")
    if len(kernels) != 2:
        p.error("--kernels takes two names: the exact kernel, then the rounding one")
    for k in kernels:
        hsic.gram_kernel(k)  # a kernel this CPU cannot run fails here, not halfway
    result = {"kernels": kernels, "samples": args.samples}
    start = time.perf_counter()

    source = ModelSource("resnet20", {"num_classes": 10})
    model, shape = load_model(source, WEIGHTS)
    graph = analyze(model, shape)
    norm = preset(source.preset or "imagenet")
    n = args.samples
    pool = load_calibration(args.data, shape, samples=2 * n, seed=1, norm=norm)
    batches = {
        "prune batch": load_calibration(args.data, shape, samples=n, seed=0, norm=norm),
        "batch A": pool[0::2], "batch B": pool[1::2],  # disjoint
    }
    result["resnet20"] = compare(graph, batches, kernels)
    result["resnet20"]["outliers"] = with_outliers(graph, batches["prune batch"], kernels)

    plans = {}
    budgets = [["--flops-ratio", "0.5"]]
    if args.profile:
        budgets.append(["--latency-ratio", "0.6", "--profile", args.profile])
    with tempfile.TemporaryDirectory() as tmp:
        for budget in budgets:
            per_kernel = {k: cli_widths(k, budget, args.data, n, tmp) for k in kernels}
            plans[" ".join(budget[:2])] = {
                "widths": {k: w for k, (w, _) in per_kernel.items()},
                "same_widths": per_kernel[kernels[0]][0] == per_kernel[kernels[1]][0],
                "group_importance": {k: i for k, (_, i) in per_kernel.items()},
            }
    result["resnet20"]["plans"] = plans

    if args.mobilenet_samples:
        torch.set_num_threads(os.cpu_count() or 1)
        mnet = build("mobilenet_v1").eval()
        mshape = BUILTIN["mobilenet_v1"].input_shape
        mgraph = analyze(mnet, mshape)
        m = args.mobilenet_samples
        mb = {"bench_prune batch (seed 0)": torch.randn(m, *mshape,
                                                        generator=torch.Generator().manual_seed(0)),
              "seed 1": torch.randn(m, *mshape, generator=torch.Generator().manual_seed(1))}
        # compare() wants two batches besides the one the sampling noise skips
        mres = compare(mgraph, {"seed 0": mb["bench_prune batch (seed 0)"], "seed 1": mb["seed 1"]},
                       kernels)
        result["mobilenet_v1"] = dict(mres, samples=m)
    result["seconds"] = time.perf_counter() - start

    def show(title, r):
        print(title)
        for name, v in r["kernel"].items():
            print(f"  {kernels[0]} vs {kernels[1]}, {name:<12} max |d nHSIC| "
                  f"{v['nhsic_max_abs_diff']:.2e}   max |d importance| "
                  f"{v['importance_max_abs_diff']:.2e}")
        s = r["sampling"]
        print(f"  {kernels[0]}, {s['batches'][0]} vs {s['batches'][1]} (sampling): max |d nHSIC| "
              f"{s['nhsic_max_abs_diff']:.2e} (median {s['nhsic_median_abs_diff']:.2e})   "
              f"max |d importance| {s['importance_max_abs_diff']:.2e}")

    show(f"ResNet-20 (shapes10, trained), {n} images, {result['resnet20']['layers']} layers:",
         result["resnet20"])
    for factor, v in result["resnet20"]["outliers"].items():
        print(f"  one value per 256-feature block at {factor} the layer's largest: max |d nHSIC| "
              "against float64 " + ", ".join(f"{k} {e:.1e}" for k, e in v.items()))
    for budget, v in plans.items():
        print(f"  itpl prune {budget}: widths {'unchanged' if v['same_widths'] else 'CHANGED'}")
        for k in kernels:
            print(f"    {k:<11} {v['widths'][k]}")
    if "mobilenet_v1" in result:
        show(f"MobileNetV1 (random weights, random inputs), {result['mobilenet_v1']['samples']} "
             f"images, {result['mobilenet_v1']['layers']} layers:", result["mobilenet_v1"])
    print(f"({result['seconds']:.0f} s)")
    if args.json:
        from itpl.util.fileio import write_json

        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
