"""The closing table of ``make demo``: accuracy and measured latency before and after.

    python examples/demo_report.py DEMO_FOLDER [--prefix resnet20-lat60]

Reads what the demo's commands wrote (``itpl eval --json`` outputs, the plan
with its ``--verify`` record, the ``itpl bench --json`` table), prints one table
and writes ``DEMO_FOLDER/summary.json``. It measures nothing itself.
"""

import argparse
import json
import os
import sys

from itpl.fileio import write_json


def _read(folder, name):
    path = os.path.join(folder, name)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"demo_report: cannot read {path} ({exc}); run `make demo` first")


def summarise(folder: str, prefix: str) -> dict:
    plan = _read(folder, f"{prefix}.plan.json")
    bench = _read(folder, "bench.json")
    one = [r for r in bench["results"] if r["batch"] == 1]
    base, pruned = one[0], one[1]
    verified = plan["budget"].get("verified") or {}
    groups = plan["groups"]
    return {
        "top1": {"unpruned": _read(folder, "unpruned.eval.json")["top1"],
                 "pruned": _read(folder, "pruned.eval.json")["top1"],
                 "finetuned": _read(folder, "finetuned.eval.json")["top1"]},
        "test_images": _read(folder, "unpruned.eval.json")["samples"],
        "latency_ms": {"unpruned": base["median_ms"], "pruned": pruned["median_ms"]},
        "speedup": [pruned["speedup"], pruned["speedup_low"], pruned["speedup_high"]],
        "threads": bench["device"].get("threads"),
        "budget_ratio": verified.get("budget_ratio", plan["budget"].get("ratio")),
        "verified_ratio": verified.get("ratio"),
        "met": verified.get("met"),
        "widths": {"unpruned": [g["full"] for g in groups], "pruned": [g["kept"] for g in groups],
                   "zero_importance": [g.get("zero_importance_kept") for g in groups]},
    }


def table(s: dict) -> str:
    t, ms = s["top1"], s["latency_ms"]
    sp, lo, hi = s["speedup"]
    rows = [
        f"{'':<30} {'test top-1':>11} {'latency':>10} {'speedup':>22}",
        f"{'unpruned ResNet-20':<30} {t['unpruned']:>11.1%} {ms['unpruned']:>7.3f} ms "
        f"{'1.00x':>22}",
        f"{'pruned (no fine-tuning)':<30} {t['pruned']:>11.1%} {ms['pruned']:>7.3f} ms "
        f"{f'{sp:.2f}x (95% CI {lo:.2f}-{hi:.2f})':>22}",
        f"{'pruned + 2 epochs fine-tuning':<30} {t['finetuned']:>11.1%} {'(same model)':>10}",
    ]
    moved = sum(abs(p - z) for p, z in zip(s["widths"]["pruned"], s["widths"]["zero_importance"])
                if z is not None)
    budget = (f"latency budget {s['budget_ratio']:.0%} of the unpruned model: verified at "
              f"{s['verified_ratio']:.1%}, {'met' if s['met'] else 'NOT MET'}"
              if s["verified_ratio"] is not None else "latency budget not verified")
    return "\n".join(rows + [
        f"({s['test_images']} test images; latency on the local CPU, {s['threads']} thread(s), "
        "timed interleaved with the unpruned model)",
        budget,
        f"widths {s['widths']['pruned']} of {s['widths']['unpruned']}; importance moved "
        f"{moved} channels against uniform scaling"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--prefix", default="resnet20-lat60")
    args = p.parse_args(argv)
    s = summarise(args.folder, args.prefix)
    print(table(s))
    write_json(os.path.join(args.folder, "summary.json"), s)
    plots = os.path.join(args.folder, "plots")
    if os.path.isdir(plots):
        print("plots: " + ", ".join(os.path.join(plots, f) for f in sorted(os.listdir(plots))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
