#!/usr/bin/env -S python3 -S
"""Stand-in for TFLite's benchmark_model on the loopback phone (loopback/peer.py).

It takes the real tool's flags (--graph, --num_threads, --warmup_runs,
--warmup_min_secs, --num_runs, --min_secs, --max_secs, --enable_op_profiling),
times the model with the LiteRT interpreter on this CPU, and prints what the
real tool prints (layouts and their sources: itpl/deploy/devices/benchmark_output.py):

- ITPL_STANDIN_LAYOUT unset or "tflite": TFLite's tool, INFO-prefixed lines, a
  statistics line per phase and the 'Inference timings in us' summary;
- "percentiles": the same with StatWithPercentiles' p5/median/p95;
- "litert": LiteRT's tool, percentiles and the BENCHMARK RESULTS block in ms.

--enable_op_profiling=true adds the op profile; with XNNPACK the whole model
is one delegate node, as the real tool shows it. Unknown flags and a missing
model fail as the tool does.

Start-up like a native binary's: the real tool starts in milliseconds, while a
Python process that imports LiteRT takes 0.3-0.8 s here, more than the bursts
it times. So the first run also starts a zygote (as Android starts apps): a
process that has imported LiteRT and NumPy, listens on a Unix socket named
after this file's contents and its Python, and forks a child per later run.
A run sends its process id and argv; the child takes the caller's folder,
environment (ITPL_*) and CPU affinity from /proc, and writes the output and
the exit status to the caller's socket, which the caller relays. The zygote
exits after 60 s unused; ITPL_STANDIN_ZYGOTE=0 runs every call in its own
process. A call through this script still starts Python (32-38 ms a call
here); loopback/launcher.py builds a native caller (about 10 ms), which the
benchmarks push instead.
"""

import os
import sys
import time

ZYGOTE_IDLE_S = 60
_EXIT = b"\0itpl-exit:"


def main(argv):
    flags = {"num_threads": "-1", "warmup_runs": "1", "warmup_min_secs": "0.5",
             "num_runs": "50", "min_secs": "1", "max_secs": "150", "enable_op_profiling": "false"}
    layout = os.environ.get("ITPL_STANDIN_LAYOUT", "tflite")
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
        ordered = sorted(times)  # percentiles as StatWithPercentiles picks them
        pct = "" if layout == "tflite" else " ".join(
            ["", *(f"{k}={ordered[len(ordered) * p // 100]}" for k, p in
                   (("p5", 5), ("median", 50), ("p95", 95)))])
        if len(set(times)) == 1:
            print(f"INFO: count={len(times)} curr={times[-1]}"
                  + ("(all same)" if len(times) > 1 else "") + pct)
        else:
            print(f"INFO: count={len(times)} first={times[0]} curr={times[-1]} min={min(times)} "
                  f"max={max(times)} avg={avg:g} std={std}" + pct)
        return times, avg

    warm, warm_avg = run(int(flags["warmup_runs"]), float(flags["warmup_min_secs"]),
                         float(flags["max_secs"]))
    print()
    timed, avg = run(int(flags["num_runs"]), float(flags["min_secs"]), float(flags["max_secs"]))
    print()
    if layout == "litert":
        at = "INFO: [benchmark_litert_model.h:{}] "
        print(at.format(89) + "\n========== BENCHMARK RESULTS ==========")
        for line, text in ((94, f"Model initialization: {init_us / 1e3:.2f} ms"),
                           (95, f"Warmup (first):       {warm[0] / 1e3:.2f} ms"),
                           (97, f"Warmup (avg):         {warm_avg / 1e3:.2f} ms ({len(warm)} runs)"),
                           (99, f"Inference (avg):      {avg / 1e3:.2f} ms ({len(timed)} runs)"),
                           (103, f"Inference (min):      {min(timed) / 1e3:.2f} ms"),
                           (105, f"Inference (max):      {max(timed) / 1e3:.2f} ms"),
                           (138, "======================================\n")):
            print(at.format(line) + text)
    else:
        print(f"INFO: Inference timings in us: Init: {init_us}, First inference: {warm[0]}, "
              f"Warmup (avg): {warm_avg:g}, Inference (avg): {avg:g}")
        print("INFO: Memory footprint delta from the start of the tool (MB): init=0 overall=0")
    if flags["enable_op_profiling"] in ("true", "1"):
        print("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:")
        print("============================== Run Order ==============================")
        print("\t" + "\t".join(["[node type]", "[first]", "[avg ms]", "[%]", "[cdf%]", "[mem KB]",
                               "[times called]", "[Name]"]))
        print("\t" + "\t".join(["TfLiteXNNPackDelegate", f"{timed[0] / 1e3:.3f}",
                               f"{avg / 1e3:.3f}", "100.000%", "100.000%", "0.000", "1",
                               "[model]:0"]))
        print()
    return 0


def socket_path(python: str | None = None) -> str:
    """The Unix socket of the zygote that ``python`` (default: this one) runs,
    named after this file's contents and that Python; loopback/launcher.py
    builds it into the native caller."""
    import zlib  # not hashlib, tempfile: their imports cost more than the rest of the caller

    with open(os.path.abspath(__file__), "rb") as f:
        key = zlib.crc32(f.read() + (python or sys.executable).encode())
    return os.path.join(os.environ.get("TMPDIR", "/tmp"), f"itpl-standin-{os.getuid()}-{key:08x}.sock")


def _via_zygote(argv) -> int | None:
    """Run ``argv`` in a child of the zygote, starting one if there is none;
    None when none came up. Built-in modules only (``_socket``, no ``json``):
    ``socket`` and ``json`` took 20 ms of imports a call."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    for attempt in range(300):
        try:
            sock.connect(socket_path())
            break
        except OSError:
            if attempt == 0:
                _start_zygote()
            time.sleep(0.05)
    else:
        return None
    try:  # the request: our process id and the arguments, each ending in NUL
        sock.sendall(b"".join(a.encode() + b"\0" for a in [str(os.getpid()), *argv]))
        sock.shutdown(_socket.SHUT_WR)
        out = b"".join(iter(lambda: sock.recv(65536), b""))  # a few KB
    finally:
        sock.close()
    cut = out.rfind(_EXIT)
    os.write(1, out[:cut] if cut >= 0 else out)
    sys.stdout.flush()
    return int(out[cut + len(_EXIT):].strip() or 1) if cut >= 0 else 1  # no status: killed


def _serve(path: str) -> None:
    """The zygote: import the heavy modules once, then fork a child per request."""
    import signal
    import socket
    import traceback

    import importlib

    for heavy in ("numpy", "ai_edge_litert.interpreter"):  # imported once, shared by children
        importlib.import_module(heavy)

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path + f".{os.getpid()}")  # bound aside, then renamed: never half there
        os.replace(path + f".{os.getpid()}", path)
    except OSError:
        return
    server.listen(16)
    server.settimeout(ZYGOTE_IDLE_S)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
    while True:
        try:
            conn, _ = server.accept()
        except socket.timeout:
            break
        if os.fork() != 0:
            conn.close()
            continue
        server.close()
        code = 1
        try:
            pid, *argv = b"".join(iter(lambda: conn.recv(65536), b"")).decode().split("\0")[:-1]
            # the caller's folder, ITPL_* environment and CPU affinity, from /proc
            os.chdir(os.readlink(f"/proc/{pid}/cwd"))
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(e.split("=", 1) for e in f.read().decode().split("\0") if "=" in e)
            for key in [k for k in os.environ if k.startswith("ITPL_")]:
                del os.environ[key]  # the caller's, not the zygote's start-up values
            os.environ.update({k: v for k, v in env.items() if k.startswith("ITPL_")})
            os.sched_setaffinity(0, os.sched_getaffinity(int(pid)))
            os.dup2(conn.fileno(), 1)
            os.dup2(conn.fileno(), 2)
            code = main(argv)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                conn.sendall(_EXIT + f"{code}\n".encode())
            except OSError:
                pass
            os._exit(0)
    try:
        os.unlink(path)
    except OSError:
        pass


def _start_zygote() -> None:
    """A detached zygote, with site-packages (this caller may run without them)."""
    import subprocess

    subprocess.Popen([sys.executable, os.path.abspath(__file__), "--itpl-zygote"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--itpl-zygote"]:
        _serve(socket_path())
        sys.exit(0)
    if os.environ.get("ITPL_STANDIN_ZYGOTE", "1") != "0":
        status = _via_zygote(sys.argv[1:])
        if status is not None:
            sys.exit(status)
    if sys.flags.no_site:  # started by the shebang's -S: LiteRT needs site-packages
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]])
    sys.exit(main(sys.argv[1:]))
