"""The ADB device against the local one: same commands, same CPU, agreement.

The loopback phone of loopback/peer.py runs the stand-in benchmark_model
(loopback/benchmark_model.py), which times with LiteRT on this CPU, so
``--device adb:...`` and ``--device local`` measure the same hardware through
different paths: the ADB protocol, a pushed model, a separate process, and
benchmark_model's average instead of itpl's median. Issue 6's bar is that the
results agree within measurement noise. ``--transport server`` reaches the
phone through Debian's real adb server instead (``--device adb``, issue 18;
started on a private port and HOME, ``adb connect``ed to the phone, killed at
the end). This prints, for one model:

1. ``itpl profile`` on both: time taken, round trips to the phone,
   validation, and each profile's prediction of the same random width
   configurations (ratio adb / local). The phone runs the stand-in tool's
   native launcher (loopback/launcher.py) where a C compiler is found, as a
   real phone runs a native benchmark_model; the converter is warmed up
   before either profile, so neither pays its imports;
2. ``itpl prune --latency-ratio R --verify`` with each profile: widths chosen,
   predicted and measured latency;
3. ``itpl bench --batch 1 4 8`` of the unpruned and pruned models on both, in
   interleaved rounds (ratio adb / local per model and batch).

    python bench/bench_adb.py [--model mobilenet_v1] [--threads 1] [--transport direct|server]
                              [--stand-in native|python] [--profile-only] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import itpl  # noqa: E402
from itpl.deploy.bench import bench_models  # noqa: E402
from itpl.deploy.devices.adb import AdbDevice  # noqa: E402
from itpl.deploy.devices.local import LocalDevice  # noqa: E402
from itpl.deploy.export import export_tflite  # noqa: E402
from itpl.latency.measure import profile_model  # noqa: E402
from itpl.model.graph import analyze  # noqa: E402
from itpl.model.source import ModelSource  # noqa: E402
from itpl.pipeline import prune_model  # noqa: E402
from itpl.train.data import random_calibration  # noqa: E402
from itpl.util.fileio import write_json  # noqa: E402
from loopback.adb_server import DebianAdbServer  # noqa: E402
from loopback.launcher import TOOL, stand_in  # noqa: E402
from loopback.peer import LoopbackPhone  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mobilenet_v1")
    p.add_argument("--input-shape", default="3,224,224")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ratio", type=float, default=0.54, help="latency budget / unpruned")
    p.add_argument("--rounds", type=int, default=3, help="interleaved bench rounds")
    p.add_argument("--transport", choices=("direct", "server"), default="direct",
                   help="reach the phone with adb-shell (adb:HOST:PORT) or through Debian's adb "
                        "server (adb)")
    p.add_argument("--layout", choices=("tflite", "percentiles", "litert"), default="tflite",
                   help="what the stand-in benchmark_model prints: TFLite's average only, or a "
                        "median too (newer TFLite builds, LiteRT's tool)")
    p.add_argument("--stand-in", choices=("native", "python"), default="native",
                   help="the phone runs the stand-in tool's native launcher (where a C compiler "
                        "is found), or the Python script itself (a Python start per burst)")
    p.add_argument("--profile-only", action="store_true",
                   help="stop after the profiles (step 1): the time bar of issue 18")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.input_shape.split(","))
    report = {"model": args.model, "threads": args.threads, "transport": args.transport,
              "layout": args.layout}
    os.environ["ITPL_STANDIN_LAYOUT"] = args.layout  # the phone's shell inherits it
    binary = stand_in() if args.stand_in == "native" else TOOL  # native, as the real tool
    report["stand_in"] = "python" if binary == TOOL else "native launcher"
    with tempfile.TemporaryDirectory(prefix="itpl-adb-bench-") as tmp, \
            LoopbackPhone(os.path.join(tmp, "phone")) as phone, contextlib.ExitStack() as stack:
        if args.transport == "server":
            server = stack.enter_context(DebianAdbServer(os.path.join(tmp, "server-home")))
            server.connect(phone)
            phone_device = AdbDevice("adb", benchmark_binary=binary, server_port=server.port)
        else:
            phone_device = AdbDevice(phone.spec, benchmark_binary=binary,
                                     key_path=os.path.join(tmp, "adbkey"))
        devices = {"local": LocalDevice(), "adb": phone_device}
        torch.manual_seed(0)
        model = ModelSource(args.model).build().eval()
        graph = analyze(model, shape)
        # the converter's imports and first compilation, paid before either profile
        export_tflite(model, shape, os.path.join(tmp, "warm.tflite"))

        # 1. profiles
        profiles = {}
        for name, device in devices.items():
            start = time.perf_counter()
            trips, pushed = getattr(device, "round_trips", 0), getattr(device, "pushed_bytes", 0)
            profiles[name] = profile_model(graph, device, name=args.model, threads=args.threads,
                                           rounds=1)
            v = profiles[name].validation["random"]
            report[f"profile_{name}"] = {"seconds": time.perf_counter() - start,
                                         "within_10pct": v["within_10pct"],
                                         "within_5pct": v["within_5pct"],
                                         "unpruned_ms": profiles[name].calibration["measured_ms"][0],
                                         "round_trips": getattr(device, "round_trips", 0) - trips,
                                         "pushed_mb": (getattr(device, "pushed_bytes", 0) - pushed) / 1e6}
            print(f"{name:>5}: profiled in {report[f'profile_{name}']['seconds']:.0f} s; unpruned "
                  f"{report[f'profile_{name}']['unpruned_ms']:.3f} ms; validation "
                  f"{v['within_10pct']:.0%} within 10%, {v['within_5pct']:.0%} within 5%"
                  + (f"; {report[f'profile_{name}']['round_trips']} round trips to the phone, "
                     f"{report[f'profile_{name}']['pushed_mb']:.0f} MB pushed" if name == "adb" else ""))
        ratio_s = report["profile_adb"]["seconds"] / report["profile_local"]["seconds"]
        print(f"bar (issue 18): the adb profile took {ratio_s:.2f}x the local one's time (bar 1.5x; "
              f"stand-in benchmark_model: {report['stand_in']})")
        rng = np.random.default_rng(1)
        alphas = rng.uniform(0.1, 1.0, (50, len(graph.widths)))
        ratio = [profiles["adb"].cost()(a) / profiles["local"].cost()(a) for a in alphas]
        report["prediction_ratio"] = {"median": float(np.median(ratio)), "min": float(min(ratio)),
                                      "max": float(max(ratio))}
        print(f"prediction adb / local over 50 random configurations: median "
              f"{np.median(ratio):.3f} (range {min(ratio):.3f} to {max(ratio):.3f})")
        if args.profile_only:
            if args.json:
                write_json(args.json, report)
            return report

        # 2. prune to the same latency ratio with each profile, verify on its device
        data = random_calibration(shape, samples=64, seed=0)
        pruned = {}
        for name, device in devices.items():
            torch.manual_seed(0)
            budget = args.ratio * profiles[name].calibration["measured_ms"][0]
            r = prune_model(ModelSource(args.model), itpl.Latency(ms=budget), data=data,
                            profile=profiles[name])
            pruned[name] = r
            report[f"prune_{name}"] = {"widths": r.allocation.widths, "budget_ms": budget,
                                       "predicted_ms": r.allocation.cost}
        same = pruned["adb"].allocation.widths == pruned["local"].allocation.widths
        diff = np.abs(np.array(pruned["adb"].allocation.widths)
                      - np.array(pruned["local"].allocation.widths)).sum()
        report["same_widths"] = same
        print(f"pruned to {args.ratio:.0%}: widths {'identical' if same else 'differ'} "
              f"(total |difference| {diff} channels of {sum(graph.widths)})")

        # 3. bench both models on both devices, interleaved
        files = {}
        for label, m in (("unpruned", model), ("pruned (local profile)", pruned["local"].model)):
            for b in (1, 4, 8):
                files[(label, b)] = export_tflite(
                    m, shape, os.path.join(tmp, f"{len(files)}.tflite"), batch=b).path
        times = {(name, key): [] for name in devices for key in files}
        for _ in range(args.rounds):
            for name, device in devices.items():
                result = bench_models([(label, {b: files[(label, b)] for b in (1, 4, 8)})
                                       for label in ("unpruned", "pruned (local profile)")],
                                      device, threads=args.threads, rounds=3)
                for row in result["results"]:
                    times[(name, (row["model"], row["batch"]))].append(row["median_ms"])
        rows = []
        print(f"\n{'model':<24} {'batch':>5} {'local':>9} {'adb':>9} {'adb/local':>9}")
        for key in files:
            lo, ad = (float(np.median(times[(n, key)])) for n in ("local", "adb"))
            rows.append({"model": key[0], "batch": key[1], "local_ms": lo, "adb_ms": ad,
                         "ratio": ad / lo})
            print(f"{key[0]:<24} {key[1]:>5} {lo:>7.3f}ms {ad:>7.3f}ms {ad / lo:>9.3f}")
        report["bench"] = rows
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
