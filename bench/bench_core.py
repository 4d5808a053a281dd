"""Centred Gram and nHSIC matrix: itpl's C++ core against its baselines, in one run.

Same input, same thread count, measurements interleaved so drift on a shared
machine hits every contender alike:

  Gram, n = 256 samples, d = 100,352 and 401,408 features (MobileNetV1 layer
  outputs at 224 x 224), float32:
    (a) itpl.method.hsic.centered_gram, once per SIMD kernel this CPU can run
        (--kernels; e.g. avx2 and avx512 on an AVX-512 CPU, forced by name)
    (b) torch: X @ X.T, then centring
    (-) OpenBLAS ssyrk then centring: the BLAS candidate for the kernel, from
        the scipy-openblas32 wheel (cblas, row-major X as it is) when it is
        installed, else SciPy's bundled OpenBLAS; measured so that the choice
        between BLAS and the hand-written kernel is the benchmark's
  nHSIC matrix of L = 14 layers (n = 256, d = 100,352 each):
    (a) itpl: one centred Gram per layer (the kernel 'auto' or ITPL_GRAM_KERNEL
        picks), then itpl.method.hsic.nhsic_matrix
    (c) the authors' approach: NumPy Gram matrices rebuilt for every pair

Two rates per contender: GEMM-equivalent GFLOP/s (2 n^2 d for everyone, so
times compare like with like) and the rate of the work it does (a GEMM does
2 n^2 d flops, a symmetric product n (n + 1) d) as a share of this machine's
float32 FMA peak, measured here by itpl._core.fma_peak_gflops: threads x the
best one-thread rate of register-only FMAs at the widest vector width (best
of several short trials, so other load on a shared machine lowers it least).

    python bench/bench_core.py [--threads 2] [--repeats 5] [--kernels avx2,avx512]
                               [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--layers", type=int, default=14)
    p.add_argument("--kernels", help="itpl Gram kernels to time, comma-separated "
                   "(default: every SIMD kernel this CPU can run, else generic)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (a smoke run for the demo, not the figures)")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def set_threads(threads: int) -> None:
    # BLAS libraries read these at load time; torch is told directly below.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


# OpenMP and OpenBLAS worker threads spin for a while after a call before they
# sleep; on 2 cores the spinning threads of the previous contender would slow
# the next one down. A pause lets every runtime's threads go idle first.
SETTLE_S = 0.3


def interleaved(contenders: dict, repeats: int) -> dict:
    """Median/min seconds per contender, one call of each per round after a warm-up."""
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: {"median_s": statistics.median(v), "min_s": min(v)} for name, v in times.items()}


def center(g):
    m = g.mean(axis=0, keepdims=True)
    return g - m - m.T + g.mean()


def openblas_ssyrk(threads):
    """(name, fn(x) -> lower-triangle X X^T) from scipy-openblas32, or SciPy's OpenBLAS."""
    try:
        import ctypes

        import scipy_openblas32
    except ImportError:
        from scipy.linalg import blas

        def syrk(x):
            # trans=1 on X^T column-major (a view of row-major X): no copy of X.
            return blas.ssyrk(1.0, x.T, trans=1, lower=1)

        return "scipy's OpenBLAS", syrk
    lib = ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so"))
    lib.scipy_openblas_set_num_threads(threads)
    lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
    f = lib.scipy_cblas_ssyrk
    f.restype = None
    ptr = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_float, ptr, ctypes.c_int, ctypes.c_float, ptr, ctypes.c_int]
    row_major, lower, no_trans = 101, 122, 111

    def syrk(x):
        n, d = x.shape
        c = np.empty((n, n), dtype=np.float32)
        f(row_major, lower, no_trans, n, d, 1.0, x, d, 0.0, c, n)
        return c

    core = lib.scipy_openblas_get_corename().decode()
    return f"scipy-openblas32 {scipy_openblas32.__version__} ({core})", syrk


def bench_gram(n, d, threads, repeats, rng, kernels, syrk):
    import torch

    from itpl.method import hsic

    x = (rng.standard_normal((n, d), dtype=np.float32) + 0.5).astype(np.float32)
    xt = torch.from_numpy(x)

    def itpl_gram(kernel):
        return lambda: hsic.centered_gram(x, num_threads=threads, kernel=kernel)

    def torch_gram():
        return center(xt @ xt.T)

    def blas_gram():
        g = syrk(x).astype(np.float64)
        return center(np.tril(g) + np.tril(g, -1).T)

    contenders = {f"itpl {k}": itpl_gram(k) for k in kernels}
    contenders.update({"torch": torch_gram, "openblas ssyrk": blas_gram})
    r = interleaved(contenders, repeats)
    # float64 reference in feature chunks (a float64 copy of X would take 0.8 GB)
    exact = np.zeros((n, n))
    for c0 in range(0, d, 16384):
        xc = x[:, c0:c0 + 16384].astype(np.float64)
        exact += xc @ xc.T
    exact = center(exact)
    scale = np.abs(exact).max()
    errors = {name.removeprefix("itpl "): float(np.abs(np.asarray(fn()) - exact).max() / scale)
              for name, fn in contenders.items() if name != "openblas ssyrk"}
    gemm = 2.0 * n * n * d / 1e9
    for name, v in r.items():
        v["gflops_gemm_equiv"] = gemm / v["median_s"]
        work = gemm if name == "torch" else n * (n + 1) * d / 1e9
        v["gflops_work"] = work / v["median_s"]
        v["speedup_vs_torch"] = r["torch"]["median_s"] / v["median_s"]
    return {"n": n, "d": d, "results": r, "vs_float64": errors}


def bench_matrix(n, d, layers, threads, rng):
    from itpl.method import hsic

    xs = [rng.standard_normal((n, d), dtype=np.float32) + rng.uniform(0, 1) for _ in range(layers)]

    def itpl_matrix():
        grams = [hsic.centered_gram(x, num_threads=threads) for x in xs]
        return hsic.nhsic_matrix(grams, num_threads=threads)

    def authors_matrix():
        # Per pair: both Grams rebuilt from the activations, centred, compared.
        m = np.eye(layers)
        for i in range(layers):
            for j in range(i + 1, layers):
                ki = center((xs[i] @ xs[i].T).astype(np.float64))
                kj = center((xs[j] @ xs[j].T).astype(np.float64))
                m[i, j] = m[j, i] = np.trace(ki @ kj) / (np.linalg.norm(ki) * np.linalg.norm(kj))
        return m

    ours = itpl_matrix()  # warm-up
    t_itpl = []
    for _ in range(3):
        time.sleep(SETTLE_S)
        t0 = time.perf_counter()
        itpl_matrix()
        t_itpl.append(time.perf_counter() - t0)
    t_itpl = statistics.median(t_itpl)
    # The reference takes seconds: one run is a stable figure.
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    theirs = authors_matrix()
    t_ref = time.perf_counter() - t0
    return {"n": n, "d": d, "layers": layers, "itpl_s": t_itpl, "authors_s": t_ref,
            "speedup": t_ref / t_itpl, "max_abs_diff": float(np.abs(ours - theirs).max())}


# Kernels whose products are bf16 or integer dot products: their share is of
# their own dot-product peak (4 flops per float32 lane, 8 integer operations
# per 32-bit lane for bytes, 4 for 16-bit pairs), not of the float32 FMA peak.
DOT_PRODUCT = ("avx512bf16", "avx512vnni", "avx2int16")


def measure_peak(kernels, threads):
    """This machine's float32 FMA peak in GFLOP/s (see the module docstring), and the
    peak per kernel (a dot-product kernel's: its bf16 or 8-bit dot products)."""
    from itpl import _core

    widest = {}
    for k in kernels:
        widest[k] = max(_core.fma_peak_gflops(k, num_threads=1, seconds=0.1) for _ in range(5))
    fp32 = max(v for k, v in widest.items() if k not in DOT_PRODUCT)
    return threads * fp32, {k: threads * v for k, v in widest.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    import torch

    from itpl.method import hsic

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    simd = [k for k in hsic.gram_kernels() if k != "generic"] or ["generic"]
    kernels = args.kernels.split(",") if args.kernels else simd
    sizes = [4096, 16384] if args.quick else [100_352, 401_408]
    layer_d = 4096 if args.quick else 100_352
    blas_name, syrk = openblas_ssyrk(args.threads)
    peak, peaks = measure_peak(hsic.gram_kernels(), args.threads)
    print(f"itpl core benchmark: n = {args.samples}, {args.threads} threads, kernels "
          f"{', '.join(kernels)} (auto: {hsic.gram_kernel('auto')}), torch {torch.__version__}, "
          f"BLAS {blas_name}, repeats {args.repeats}")
    print(f"float32 FMA peak, {args.threads} threads: {peak:.0f} GFLOP/s ("
          + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
          + "; a bf16 or integer kernel's share is of its dot-product peak, in G operations/s)")
    print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    out = {"threads": args.threads, "kernels": kernels, "auto_kernel": hsic.gram_kernel("auto"),
           "blas": blas_name, "peak_gflops": peak, "peak_by_width": peaks,
           "load_average_before": os.getloadavg(), "gram": [], "matrix": None}

    print(f"\n{'centred Gram':<16}{'d':>8}  {'median ms':>9}  {'GEMM-eq GFLOP/s':>15}  "
          f"{'work GFLOP/s':>12}  {'of peak':>7}  {'vs torch':>8}")
    for d in sizes:
        g = bench_gram(args.samples, d, args.threads, args.repeats, rng, kernels, syrk)
        out["gram"].append(g)
        for name, v in g["results"].items():
            kernel = name.removeprefix("itpl ")
            share = v["gflops_work"] / (peaks[kernel] if kernel in DOT_PRODUCT else peak)
            print(f"{name:<16}{d:>8}  {v['median_s'] * 1e3:>9.1f}  {v['gflops_gemm_equiv']:>15.1f}  "
                  f"{v['gflops_work']:>12.1f}  {share:>7.0%}  "
                  f"{v['speedup_vs_torch']:>7.2f}x")
        for k, err in g["vs_float64"].items():
            print(f"{'':16}max |K - float64 K| / max |K|: {k} {err:.1e}")

    m = bench_matrix(args.samples, layer_d, args.layers, args.threads, rng)
    out["matrix"] = m
    out["load_average_after"] = os.getloadavg()
    print(f"\nnHSIC matrix, {m['layers']} layers x (n = {m['n']}, d = {m['d']}), "
          f"kernel {hsic.gram_kernel()}:")
    print(f"  itpl (Gram once per layer, median of 3): {m['itpl_s']:8.2f} s")
    print(f"  authors' approach (Gram per pair):       {m['authors_s']:8.2f} s")
    print(f"  speedup {m['speedup']:.1f}x, max |difference| {m['max_abs_diff']:.1e}")
    print(f"load average after: {', '.join(f'{v:.2f}' for v in out['load_average_after'])}")

    big = out["gram"][-1]["results"]
    best_blas = big["openblas ssyrk"]["median_s"]
    print(f"\nbars at d = {out['gram'][-1]['d']} (>= 1.3x torch, goal 1.6x): "
          + ", ".join(f"{k} {big[f'itpl {k}']['speedup_vs_torch']:.2f}x" for k in kernels)
          + f"; OpenBLAS ssyrk {big['openblas ssyrk']['speedup_vs_torch']:.2f}x "
          f"(each itpl kernel vs ssyrk: "
          + ", ".join(f"{k} {best_blas / big[f'itpl {k}']['median_s']:.2f}x" for k in kernels)
          + f"); 14-layer matrix {m['speedup']:.1f}x the authors' approach (bar 20x)")
    if args.json:
        from itpl.util.fileio import write_json

        write_json(args.json, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
