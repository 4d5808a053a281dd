#!/usr/bin/env python3
"""Stand-in for TFLite's benchmark_model on the loopback phone (tests/adb_peer.py).

It takes the real tool's flags (--graph, --num_threads, --warmup_runs,
--warmup_min_secs, --num_runs, --min_secs, --max_secs), times the model with the
LiteRT interpreter on this CPU, and prints what the real tool prints since TF
2.13: INFO-prefixed lines, a statistics line per phase and the 'Inference
timings in us' summary. Unknown flags and a missing model fail as the tool does.
"""

import os
import sys
import time


def main(argv):
    flags = {"num_threads": "-1", "warmup_runs": "1", "warmup_min_secs": "0.5",
             "num_runs": "50", "min_secs": "1", "max_secs": "150"}
    graph = None
    for arg in argv:
        key, _, value = arg.lstrip("-").partition("=")
        if key == "graph":
            graph = value
        elif key in flags:
            flags[key] = value
        else:
            print(f"ERROR: Unconsumed cmdline flags: {arg}")
            return 1
    print("INFO: STARTING!")
    print(f"INFO: Graph: [{graph}]")
    print(f"INFO: Num threads: [{flags['num_threads']}]")
    if not graph or not os.path.isfile(graph):
        print(f"ERROR: File {graph} does not exist.")
        print("ERROR: Benchmarking failed.")
        return 1
    from ai_edge_litert.interpreter import Interpreter
    import numpy as np

    start = time.perf_counter()
    interp = Interpreter(model_path=graph, num_threads=max(1, int(flags["num_threads"])))
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
    init_us = int((time.perf_counter() - start) * 1e6)
    print(f"INFO: Loaded model {graph}")
    print(f"INFO: Initialized session in {init_us / 1e3:g}ms.")

    def run(runs, min_secs, max_secs):
        print(f"INFO: Running benchmark for at least {runs} iterations and at least {min_secs:g} "
              f"seconds but terminate if exceeding {max_secs:g} seconds.")
        times, begin = [], time.perf_counter()
        while True:
            t0 = time.perf_counter()
            interp.invoke()
            times.append(int((time.perf_counter() - t0) * 1e6))
            spent = time.perf_counter() - begin
            if (len(times) >= runs and spent >= min_secs) or spent >= max_secs:
                break
        avg = sum(times) / len(times)
        std = int((sum((t - avg) ** 2 for t in times) / len(times)) ** 0.5)
        if len(set(times)) == 1:
            print(f"INFO: count={len(times)} curr={times[-1]}" + ("(all same)" if len(times) > 1 else ""))
        else:
            print(f"INFO: count={len(times)} first={times[0]} curr={times[-1]} min={min(times)} "
                  f"max={max(times)} avg={avg:g} std={std}")
        return times, avg

    warm, warm_avg = run(int(flags["warmup_runs"]), float(flags["warmup_min_secs"]),
                         float(flags["max_secs"]))
    print()
    _, avg = run(int(flags["num_runs"]), float(flags["min_secs"]), float(flags["max_secs"]))
    print()
    print(f"INFO: Inference timings in us: Init: {init_us}, First inference: {warm[0]}, "
          f"Warmup (avg): {warm_avg:g}, Inference (avg): {avg:g}")
    print("INFO: Memory footprint delta from the start of the tool (MB): init=0 overall=0")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
