"""Freed memory kept in the process (itpl._memory) vs glibc's default, in one run.

Each setting runs in its own child process, in turn, round after round (the
machine's speed drifts; interleaving puts the drift on all settings alike):

  default    ``ITPL_KEEP_MEMORY=0``: malloc as glibc sets it, after ``import itpl``
  itpl       ``import itpl`` with nothing set by the user (the default)
  tuned env  ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set before
             start-up, the hand-tuned reference of issue 23

Work per child: a ResNet-20 training step at batch 128 (32 x 32, SGD; median of
6 steps after 2 warm-up steps) and a MobileNetV1 forward pass of 64 images at
224 x 224 under no_grad (median of 3), plus the child's peak RSS.

Bar (issue 23): the itpl training step within 1.5x of the tuned one.

``--stages`` times the CLI's long stages instead, each a ``python -m itpl``
process with ``ITPL_KEEP_MEMORY=0`` and without, in turn (wall time and the
process's peak RSS): importance (``prune`` of MobileNetV1 on 128 images; the
bar of its RSS is 4 GB), fine-tuning (1 epoch of ResNet-20 on 2000 shapes10
images), export (MobileNetV1) and profiling (ResNet-20 at 32 x 32).

    python bench/bench_memory.py [--rounds 2] [--stages] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, resource, statistics, sys, time
import itpl, torch
from itpl.model.zoo import build
torch.manual_seed(0)
net = build("resnet20")
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
steps = []
for i in range(8):
    t = time.perf_counter()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    steps.append(time.perf_counter() - t)
mnet = build("mobilenet_v1").eval()
xb = torch.randn(64, 3, 224, 224)
fwd = []
for i in range(3):
    t = time.perf_counter()
    with torch.no_grad():
        mnet(xb)
    fwd.append(time.perf_counter() - t)
print(json.dumps({"step_s": statistics.median(steps[2:]), "forward_s": statistics.median(fwd),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

SETTINGS = {
    "default": {"ITPL_KEEP_MEMORY": "0"},
    "itpl": {},
    "tuned env": {"ITPL_KEEP_MEMORY": "0", "MALLOC_MMAP_THRESHOLD_": "4294967296",
                  "MALLOC_TRIM_THRESHOLD_": "4294967296"},
}


def run(extra: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD], env=_clean_env(extra),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _clean_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ITPL_KEEP_MEMORY", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    return {**env, **extra}


def stage_commands(tmp: str) -> dict[str, list[str]]:
    """The long stages as CLI argument lists; their inputs are made in ``tmp``."""
    from itpl.train.shapes10 import write_splits

    data = os.path.join(tmp, "shapes10")
    write_splits(data, {"train": 2000, "val": 500, "test": 1})
    r20 = ["resnet20", "--model-arg", "num_classes=10"]
    return {
        "importance (prune MobileNetV1, 128 images)":
            ["prune", "--model", "mobilenet_v1", "--flops-ratio", "0.5", "--samples", "128",
             "--beta-scales", "1", "-q", "-o", os.path.join(tmp, "p")],
        "fine-tuning (ResNet-20, 1 epoch of 2000)":
            ["finetune", *r20, "--data", data, "--epochs", "1", "-q", "-o",
             os.path.join(tmp, "ft")],
        "export (MobileNetV1)": ["export", "mobilenet_v1", "-o", os.path.join(tmp, "m.tflite")],
        "profile (ResNet-20, 32 x 32)":
            ["profile", "--model", *r20, "--round-to", "8", "-q", "-o",
             os.path.join(tmp, "r.profile.json")],
    }


def run_stage(argv: list[str], extra: dict) -> dict:
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a pipe could fill and stall the child
        proc = subprocess.Popen([sys.executable, "-m", "itpl", *argv], env=_clean_env(extra),
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"itpl {' '.join(argv)} failed: {err.read().strip()[-300:]}")
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024}


def stages(rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="itpl-mem-") as tmp:
        commands = stage_commands(tmp)
        got = {stage: {"default": [], "itpl": []} for stage in commands}
        for r in range(rounds):
            for stage, argv in commands.items():
                for name in ("default", "itpl"):
                    got[stage][name].append(run_stage(argv, SETTINGS[name]))
                    print(f"round {r + 1}: {stage}, {name}: {got[stage][name][-1]}", flush=True)
    print(f"\n{'stage':<44} {'default':>9} {'itpl':>9} {'speedup':>8} {'peak RSS default/itpl':>22}")
    summary = {}
    for stage, rows in got.items():
        med = {name: {k: statistics.median(v[k] for v in runs) for k in runs[0]}
               for name, runs in rows.items()}
        summary[stage] = {**med, "speedup": med["default"]["seconds"] / med["itpl"]["seconds"]}
        print(f"{stage:<44} {med['default']['seconds']:>7.1f} s {med['itpl']['seconds']:>7.1f} s "
              f"{summary[stage]['speedup']:>7.2f}x {med['default']['peak_rss_mb']:>10.0f} / "
              f"{med['itpl']['peak_rss_mb']:.0f} MB")
    return {"stages": got, "summary": summary}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--stages", action="store_true",
                   help="time the CLI's long stages (importance, fine-tuning, export, profile)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.stages:
        report = stages(args.rounds)
        if args.json:
            from itpl.util.fileio import write_json

            write_json(args.json, report)
        return report
    results = {name: [] for name in SETTINGS}
    for r in range(args.rounds):
        for name, extra in SETTINGS.items():
            results[name].append(run(extra))
            print(f"round {r + 1}: {name:<10} {results[name][-1]}", flush=True)
    summary = {name: {k: statistics.median(v[k] for v in rows) for k in rows[0]}
               for name, rows in results.items()}
    base, tuned = summary["default"], summary["tuned env"]
    print(f"\n{'setting':<10} {'train step':>11} {'vs tuned':>9} {'forward 64':>11} "
          f"{'vs default':>10} {'peak RSS':>9}")
    for name, s in summary.items():
        print(f"{name:<10} {s['step_s']:>9.3f} s {s['step_s'] / tuned['step_s']:>8.2f}x "
              f"{s['forward_s']:>9.3f} s {base['forward_s'] / s['forward_s']:>9.2f}x "
              f"{s['peak_rss_mb']:>6.0f} MB")
    ratio = summary["itpl"]["step_s"] / tuned["step_s"]
    print(f"bar: itpl's training step {ratio:.2f}x the tuned one (bar 1.5x): "
          f"{'met' if ratio <= 1.5 else 'NOT met'}; {base['step_s'] / summary['itpl']['step_s']:.2f}x "
          f"faster than glibc's default")
    report = {"rounds": results, "summary": summary, "ratio_to_tuned": ratio}
    if args.json:
        from itpl.util.fileio import write_json

        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
