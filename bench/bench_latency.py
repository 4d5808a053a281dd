"""Latency budgets that hold on a drifting device: profile accuracy, open- and
closed-loop budgets measured beside the unpruned model, and the channel tile.

For MobileNetV1 and MobileNetV2 (random weights; latency does not depend on them),
on the local CPU, one thread, batch 1:

1. ``itpl profile``: wall time, channel tile, and the share of validation
   configurations predicted within 10% / 5% of their measured latency, random
   and solver-like ones reported apart (none of them used in the fit).
2. Open loop: pruned with the profile alone (no device) to 40, 55 and 70% of
   the unpruned latency, exported, and timed as a ratio to the unpruned model
   in interleaved rounds (itpl.deploy.timing): the measured ratio against the asked one.
3. Closed loop: ``itpl prune --latency-ratio 0.54 --profile P --device local
   --verify`` (candidates timed on the device), then the exported model timed
   again beside the unpruned one here, independently of the refine step.
4. The channel tile measured ``--tile-runs`` times on its own.

Bars (issue 16): validation >= 95% within 10%, random and solver-like; open loop
within 10% of the asked ratio; closed loop between 0.85x and 1.03x of 0.54;
the same tile in every run; profiling under 3 minutes per model.

    python bench/bench_latency.py [--models mobilenet_v1 mobilenet_v2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

import itpl
from itpl.cli import main as itpl_main
from itpl.deploy.devices import get_device
from itpl.deploy.export import export_tflite
from itpl.deploy.timing import Timer
from itpl.latency.measure import profile_model
from itpl.latency.profile import write_profile
from itpl.latency.runs import measure_channel_tile
from itpl.model.graph import analyze
from itpl.model.plan import load
from itpl.model.source import ModelSource
from itpl.pipeline import prune_model
from itpl.train.data import random_calibration
from itpl.util.fileio import write_json

SHAPE = (3, 224, 224)


def _profile(name, device, threads, folder):
    torch.manual_seed(0)
    graph = analyze(ModelSource(name).build().eval(), SHAPE)
    start = time.perf_counter()
    profile = profile_model(graph, device, name=name, threads=threads)
    seconds = time.perf_counter() - start
    path = os.path.join(folder, f"{name}.profile.json")
    write_profile(profile, path)
    v, r = profile.validation, profile.reference
    print(f"{name}: profiled in {seconds:.0f} s, channel tile {profile.settings['channel_tile']}, "
          f"unpruned {r['ms']:.3f} ms (moved {r['relative']:.0%} over the run)")
    for kind in ("random", "solver"):
        p = v[kind]
        print(f"  validation, {len(p['widths'])} {kind}: {p['within_10pct']:.0%} within 10%, "
              f"{p['within_5pct']:.0%} within 5% (largest {p['max_rel_error']:.1%}, mean "
              f"{p['mean_signed_error']:+.1%})")
    return profile, path, seconds


def _ratios(device, threads, unpruned, models, folder):
    """Each model exported and timed as a ratio to the unpruned model, interleaved."""
    base = export_tflite(unpruned, SHAPE, os.path.join(folder, "unpruned.tflite")).path
    paths = [export_tflite(m, SHAPE, os.path.join(folder, f"m{i}.tflite")).path
             for i, m in enumerate(models)]
    timer = Timer(device, base, threads=threads)
    return timer.measure(paths, rounds=10, precision=0.01), timer.spread()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--samples", type=int, default=32, help="calibration samples for pruning")
    p.add_argument("--models", nargs="+", default=["mobilenet_v1", "mobilenet_v2"],
                   choices=["mobilenet_v1", "mobilenet_v2"])
    p.add_argument("--open-ratios", default="0.4,0.55,0.7")
    p.add_argument("--closed-ratio", type=float, default=0.54)
    p.add_argument("--tile-runs", type=int, default=5)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    device = get_device("local")
    report = {"device": device.facts(args.threads), "models": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="itpl-latency-") as tmp:
        for name in args.models:
            out = report["models"][name] = {}
            profile, path, seconds = _profile(name, device, args.threads, tmp)
            out["profile"] = {"seconds": seconds, "tile": profile.settings["channel_tile"],
                              "reference": profile.reference,
                              **{k: {m: v[m] for m in ("within_10pct", "within_5pct",
                                                       "max_rel_error", "mean_signed_error")}
                                 for k, v in profile.validation.items()}}
            data = random_calibration(SHAPE, samples=args.samples, seed=0)
            asked = [float(r) for r in args.open_ratios.split(",")]
            pruned = []
            for ratio in asked:
                torch.manual_seed(0)
                pruned.append(prune_model(ModelSource(name), itpl.Latency(ratio=ratio),
                                          data=data, profile=profile,
                                          config=itpl.PruneConfig(beta_scales=(1,))).model)
            torch.manual_seed(0)
            got, spread = _ratios(device, args.threads, ModelSource(name).build().eval(), pruned,
                                  tmp)
            out["open_loop"] = []
            print(f"  open loop (profile only), timed beside the unpruned model (it moved "
                  f"{spread.relative:.0%}):")
            for ratio, rel in zip(asked, got):
                lo, hi = rel.interval()
                ok = abs(rel.ratio / ratio - 1) <= 0.10
                out["open_loop"].append({"asked": ratio, "measured": rel.ratio, "interval": [lo, hi],
                                         "rounds": len(rel.ratios), "within_10pct": ok})
                print(f"    asked {ratio:.0%}: measured {rel.ratio:.1%} [{lo:.1%}-{hi:.1%}], "
                      f"{rel.ratio / ratio:.3f}x the asked ratio {'ok' if ok else 'MISSED'}")

            prefix = os.path.join(tmp, f"{name}-closed")
            code = itpl_main(["prune", "--model", name, "--latency-ratio", f"{args.closed_ratio}",
                              "--profile", path, "--device", "local", "--verify", "--samples",
                              str(args.samples), "--beta-scales", "1", "-o", prefix, "-q"])
            assert code == 0, "itpl prune failed"
            with open(prefix + ".plan.json") as f:
                budget = json.load(f)["budget"]
            torch.manual_seed(0)
            again, spread = _ratios(device, args.threads, ModelSource(name).build().eval(),
                                    [load(prefix + ".plan.json")], tmp)
            rel = again[0]
            lo, hi = args.closed_ratio * 0.85, args.closed_ratio * 1.03
            ok = lo <= rel.ratio <= hi
            out["closed_loop"] = {"verify_ratio": budget["verified"]["ratio"],
                                  "verify_met": budget["verified"]["met"],
                                  "candidates": budget["refined"]["steps"],
                                  "measured_again": rel.ratio, "interval": list(rel.interval()),
                                  "in_bar": ok}
            print(f"  closed loop ({len(budget['refined']['steps'])} candidates timed): --verify "
                  f"{budget['verified']['ratio']:.1%} "
                  f"({'met' if budget['verified']['met'] else 'NOT met'}); timed again here: "
                  f"{rel.ratio:.1%} = {rel.ratio / args.closed_ratio:.3f}x of "
                  f"{args.closed_ratio:.0%} (bar 0.85-1.03x): {'ok' if ok else 'MISSED'}")
        tiles = [measure_channel_tile(device, threads=args.threads) for _ in range(args.tile_runs)]
        report["tiles"] = tiles
        print(f"channel tile in {args.tile_runs} runs: {tiles} "
              f"({'identical' if len(set(tiles)) == 1 else 'DIFFERENT'})")
    report["seconds"] = time.perf_counter() - start
    print(f"total {report['seconds'] / 60:.1f} min")
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
