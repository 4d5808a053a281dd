"""itpl prune's stages on this machine: importance vs the bare forward pass, the
solver, and peak memory, measured in one run.

  MobileNetV1 at 224 x 224, n calibration images (default 256), eval mode:
    (a) bare forward pass of the n images under no_grad (the baseline)
    (b) the whole importance stage: capture + centred Grams + nHSIC matrix
        (itpl.method.importance.compute_importance), which runs that same forward pass
  Solver (SLSQP + rounding + repair) at 50% of the FLOPs: MobileNetV1 and ResNet-50.
  Peak resident memory of this process (ru_maxrss), which includes both stages.

Bars: importance <= 1.3x forward (issue 17; 1.5x in issue 3), solver < 0.5 s
for ResNet-50, peak RSS < 4 GB. Forward and importance runs alternate so drift
hits both. The Gram kernel is the one 'auto' picks, or ITPL_GRAM_KERNEL's
(e.g. ITPL_GRAM_KERNEL=avx2 on an AVX-512 CPU); --kernels times the importance
stage once per named kernel in every round (e.g. --kernels avx512,avx512bf16),
each against the forward pass of its round.

    python bench/bench_prune.py [--samples 256] [--repeats 3] [--threads N]
                                [--kernels K1,K2] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import numpy as np
import torch

from itpl.method.hsic import KERNEL_ENV, gram_kernel
from itpl.method.importance import compute_importance
from itpl.method.solve import solve
from itpl.model.cost import build_cost
from itpl.model.graph import analyze
from itpl.model.zoo import BUILTIN, build
from itpl.util.fileio import write_json

SETTLE_S = 0.3  # let OpenMP workers of the previous contender go idle (see bench_core)


def timed(fn) -> float:
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--kernels", help="Gram kernels to time the importance stage with, "
                   "comma-separated (default: the one 'auto' or ITPL_GRAM_KERNEL picks)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    kernels = [gram_kernel(k) for k in args.kernels.split(",")] if args.kernels else [None]

    model = build("mobilenet_v1").eval()
    graph = analyze(model, BUILTIN["mobilenet_v1"].input_shape)
    x = torch.randn(args.samples, *BUILTIN["mobilenet_v1"].input_shape,
                    generator=torch.Generator().manual_seed(0))

    def forward():
        with torch.no_grad():
            model(x)

    def importance(kernel):
        def run():
            before = os.environ.get(KERNEL_ENV)
            if kernel is not None:
                os.environ[KERNEL_ENV] = kernel
            try:
                compute_importance(graph, x, num_threads=args.threads)
            finally:
                if before is None:
                    os.environ.pop(KERNEL_ENV, None)
                else:
                    os.environ[KERNEL_ENV] = before
        return run

    forward()  # warm-up: allocator, kernels
    fwd, imps = [], {k: [] for k in kernels}
    for _ in range(args.repeats):
        fwd.append(timed(forward))
        for k in kernels:
            imps[k].append(timed(importance(k)))
    per_kernel = {}
    for k, imp in imps.items():
        ratios = [i / f for i, f in zip(imp, fwd)]
        per_kernel[gram_kernel(k)] = {"importance_s": statistics.median(imp),
                                      "importance_over_forward": statistics.median(ratios),
                                      "rounds": ratios}

    solver = {}
    for name in ("mobilenet_v1", "resnet50"):
        g = analyze(build(name), BUILTIN[name].input_shape)
        cost = build_cost(g, "flops")
        weights = np.random.default_rng(0).uniform(0.3, 1.0, len(g.groups))
        solve(weights, cost, 0.5 * cost.full(), g.widths)  # warm-up: scipy import
        times = [timed(lambda: solve(weights, cost, 0.5 * cost.full(), g.widths))
                 for _ in range(args.repeats)]
        solver[name] = {"groups": len(g.groups), "median_s": statistics.median(times)}

    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    first = per_kernel[gram_kernel(kernels[0])]
    result = {
        "samples": args.samples, "threads": args.threads, "gram_kernel": gram_kernel(kernels[0]),
        "forward_s": statistics.median(fwd), "importance_s": first["importance_s"],
        "importance_over_forward": first["importance_over_forward"], "kernels": per_kernel,
        "solver": solver, "peak_rss_gb": peak_gb, "load_average": os.getloadavg(),
    }
    print(f"MobileNetV1, {args.samples} images at 224x224, {args.threads} threads, "
          f"Gram kernel {', '.join(per_kernel)}, median of {args.repeats} "
          f"(load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}):")
    print(f"  bare forward pass        {result['forward_s']:7.2f} s")
    for name, r in per_kernel.items():
        label = f"importance, {name}" if len(per_kernel) > 1 else "importance stage"
        print(f"  {label:<24} {r['importance_s']:7.2f} s   "
              f"{r['importance_over_forward']:.2f}x forward (bar <= 1.3x; "
              f"per round {', '.join(f'{v:.2f}' for v in r['rounds'])})")
    for name, s in solver.items():
        print(f"  solver {name:<17} {s['median_s'] * 1e3:7.1f} ms  ({s['groups']} groups; "
              "bar < 500 ms for resnet50)")
    print(f"  peak RSS                 {peak_gb:7.2f} GB  (bar < 4 GB)")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
