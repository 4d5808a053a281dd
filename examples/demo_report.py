"""The closing table of ``make demo``: accuracy and measured latency before and after.

    python examples/demo_report.py DEMO_FOLDER [--prefix resnet20-lat60]

Reads what the demo's commands wrote (``itpl eval --json`` outputs, the plan
with its ``--verify`` record, the ``itpl bench --json`` table of the fp32 and
int8 files), prints one table and writes ``DEMO_FOLDER/summary.json``. It
measures nothing itself.
"""

import argparse
import json
import os
import sys

from itpl.util.fileio import write_json

# (row label, eval file, bench row: the position of the file on the bench's command line)
ROWS = [("unpruned ResNet-20, fp32", "unpruned.eval.json", 0),
        ("pruned, batch norms re-measured", "pruned.eval.json", 1),
        ("pruned + 2 epochs fine-tuning", "finetuned.eval.json", 1),
        ("unpruned, int8", "unpruned-int8.eval.json", 2),
        ("pruned + fine-tuned, int8", "finetuned-int8.eval.json", 3)]


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
    timed = [r for r in bench["results"] if r["batch"] == 1]
    verified = plan["budget"].get("verified") or {}
    rows = []
    for label, eval_file, at in ROWS:
        score, t = _read(folder, eval_file), timed[at]
        rows.append({"model": label, "top1": score["top1"], "test_images": score["samples"],
                     "file": t["model"], "ms": t["median_ms"],
                     "speedup": [t["speedup"], t["speedup_low"], t["speedup_high"]]})
    groups = plan["groups"]
    return {
        "rows": rows, "threads": bench["device"].get("threads"),
        "budget_ratio": verified.get("budget_ratio", plan["budget"].get("ratio")),
        "verified_ratio": verified.get("ratio"), "met": verified.get("met"),
        "widths": {"unpruned": [g["full"] for g in groups], "pruned": [g["kept"] for g in groups],
                   "zero_importance": [g.get("zero_importance_kept") for g in groups]},
    }


def table(s: dict) -> str:
    lines = [f"{'':<34} {'test top-1':>10} {'latency':>10}   {'speedup (95% CI)':<20}"]
    for r in s["rows"]:
        sp, lo, hi = r["speedup"]
        lines.append(f"{r['model']:<34} {r['top1']:>10.1%} {r['ms']:>7.3f} ms   "
                     f"{sp:.2f}x ({lo:.2f}-{hi:.2f})")
    w = s["widths"]
    moved = sum(abs(p - z) for p, z in zip(w["pruned"], w["zero_importance"]) if z is not None)
    budget = (f"latency budget {s['budget_ratio']:.0%} of the unpruned model's: the pruned model "
              f"measured {s['verified_ratio']:.1%} when verified, "
              f"{'met' if s['met'] else 'NOT MET'}"
              if s["verified_ratio"] is not None else "latency budget not verified")
    return "\n".join(lines + [
        f"({s['rows'][0]['test_images']} test images; latency on the local CPU, "
        f"{s['threads']} thread, each file timed beside the unpruned fp32 one, batch 1)",
        budget,
        f"widths {w['pruned']} of {w['unpruned']}: importance moved {moved} channels "
        f"against uniform scaling ({w['zero_importance']})"])


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
