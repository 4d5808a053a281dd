"""The paper's Table 3 on this device: MobileNetV1/V2, baseline and pruned to the
paper's FLOPs, exported to .tflite and timed at batch 1, 4 and 8.

Absolute times differ between devices, so the table is compared as speedups
(pruned / baseline, same device, same run) against the paper's Pixel 2 figures.
Pruning uses random calibration data and seeded random weights (the timing
depends on the widths, not on the values), so every run prunes to the same widths.

Bar (issue 4): on the local CPU, MobileNetV1 at 283M and 149M reaches at least
the paper's batch-1 speedups, 1.87x and 2.8x.

Widths are multiples of the device's channel tile (measured first, as
``itpl profile`` does; 32 on this CPU), the width a latency-aware user prunes
to. At multiples of 8 this CPU's 283M model reached only 1.75x: widths between
tiles cost the time of the next tile.

int8 rows (unless ``--no-int8``): each fp32 file quantized to full int8
(:func:`itpl.deploy.quantize.quantize_for_timing`: random calibration inputs, which
set the scales but not the time), timed in the same interleaved run, so every
row's speedup is against the fp32 baseline; a second table gives the pruned
int8 models against the int8 baseline (ratios of speedups from the same
rounds). The widths are the fp32 tile's; ``--round-to`` sets another.

    python bench/pixel2_table.py [--threads 2] [--device local | adb:HOST:PORT] [--max-seconds 10]
                                 [--models mobilenet_v1] [--round-to N] [--no-int8]
                                 [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

import itpl
from itpl.deploy.bench import bench_models, format_table
from itpl.deploy.devices import get_device
from itpl.deploy.export import export_tflite
from itpl.deploy.quantize import quantize_for_timing
from itpl.latency.runs import measure_channel_tile
from itpl.model.source import ModelSource
from itpl.pipeline import prune_model
from itpl.util.fileio import write_json

# Table 3 of the paper (Pixel 2 CPU, ms at batch 1 / 4 / 8)
PAPER = {
    "mobilenet_v1": {None: (28, 125, 252), 283e6: (15, 70, 135), 149e6: (10, 45, 84)},
    "mobilenet_v2": {None: (21, 94, 182), 217e6: (17, 75, 144), 148e6: (13, 55, 110)},
}
BATCHES = (1, 4, 8)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--device", default="local", help="local, adb:HOST:PORT or adb-usb[:SERIAL]")
    p.add_argument("--benchmark-binary", help="phones: a benchmark_model build to push")
    p.add_argument("--cpu-mask", help="phones: taskset mask, e.g. f0")
    p.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds at least")
    p.add_argument("--samples", type=int, default=64, help="calibration samples for pruning")
    p.add_argument("--models", nargs="+", choices=list(PAPER), default=list(PAPER))
    p.add_argument("--round-to", type=int,
                   help="width multiple of the pruned models (default: the device's channel "
                        "tile, measured first as itpl profile does)")
    p.add_argument("--no-int8", action="store_true", help="fp32 rows only")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    torch.manual_seed(0)  # built-in models start from random weights: fix them, fix the widths
    device = get_device(args.device, benchmark_binary=args.benchmark_binary, cpu_mask=args.cpu_mask)
    if args.round_to is None:
        args.round_to = measure_channel_tile(device, threads=args.threads)
        print(f"channel tile measured on the device: {args.round_to}")
    report = {"device": device.facts(args.threads), "round_to": args.round_to, "models": {}}
    with tempfile.TemporaryDirectory(prefix="itpl-pixel2-") as tmp:
        for name in args.models:
            rows = PAPER[name]
            models = []
            for flops in rows:
                if flops is None:
                    model, shape = ModelSource(name).build().eval(), (3, 224, 224)
                    label = f"{name} baseline"
                else:
                    config = itpl.PruneConfig(samples=args.samples,
                                              widths=itpl.AllowedWidths(round_to=args.round_to))
                    res = prune_model(ModelSource(name), itpl.Flops(flops), config=config)
                    model, shape = res.model, (3, 224, 224)
                    label = f"{name} {flops / 1e6:.0f}M ({res.allocation.cost / 1e6:.1f}M)"
                files = {b: export_tflite(model, shape, os.path.join(tmp, f"{label}-{b}.tflite"),
                                          batch=b).path for b in BATCHES}
                models.append((label, files))
            if not args.no_int8:
                int8 = []
                for label, files in models:
                    for b, path in files.items():
                        quantize_for_timing(path, f"{path[:-7]}-int8.tflite")
                    int8.append((f"{label} int8", {b: f"{f[:-7]}-int8.tflite"
                                                   for b, f in files.items()}))
                models += int8
            result = bench_models(models, device, threads=args.threads, rounds=args.rounds)
            print(format_table(result))
            paper_rows = list(rows.values())
            print(f"{'speedup vs baseline':<34}{'ours b1/b4/b8':>24}{'paper Pixel 2 b1/b4/b8':>28}")
            for (label, _), paper in zip(models[1:], paper_rows[1:]):
                ours = [r["speedup"] for r in result["results"] if r["model"] == label]
                theirs = [paper_rows[0][i] / paper[i] for i in range(3)]
                print(f"{label:<34}{' / '.join(f'{v:.2f}' for v in ours):>24}"
                      f"{' / '.join(f'{v:.2f}' for v in theirs):>28}")
            if not args.no_int8:
                speed = {(r["model"], r["batch"]): r["speedup"] for r in result["results"]}
                base = f"{models[0][0]} int8"
                print(f"{'int8 speedup vs int8 baseline':<34}{'b1/b4/b8':>24}")
                for label, _ in models[len(rows) + 1:]:
                    ours = [speed[label, b] / speed[base, b] for b in BATCHES]
                    print(f"{label:<34}{' / '.join(f'{v:.2f}' for v in ours):>24}")
            print()
            report["models"][name] = result
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
