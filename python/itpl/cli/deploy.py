"""``itpl export`` and ``itpl bench``: conversion to .tflite and latency tables.
Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
import sys

from itpl.cli.args import (DEVICE_HELP, EXIT_ERROR, EXIT_OK, add_device_args, device,
                           model_arg, nonnegative_float, positive, shape)


def export_paths(output: str, batches: list[int]) -> dict[int, str]:
    if len(batches) == 1:
        return {batches[0]: output}
    stem = output[: -len(".tflite")] if output.endswith(".tflite") else output
    return {b: f"{stem}-b{b}.tflite" for b in batches}


def _cmd_export(args: argparse.Namespace) -> int:
    from itpl.cli.int8 import check_export_args, export_int8_files
    from itpl.deploy.export import export_tflite
    from itpl.pipeline import load_any
    from itpl.util.fileio import staged_outputs

    check_export_args(args)
    model, in_shape, _ = load_any(args.model, args.weights, args.input_shape, dict(args.model_arg))

    paths, lines = export_paths(args.output, args.batch), []
    with staged_outputs() as stage:  # all batch files appear together, or none
        if args.quantize == "int8":
            lines = export_int8_files(args, model, in_shape, paths, stage)
        else:
            for batch, path in paths.items():
                r = export_tflite(model, in_shape, stage.path(path), batch=batch)
                lines.append(f"wrote {path}: batch {batch}, max |tflite - torch| = "
                             f"{r.max_abs_diff:.2e}, {r.relative_diff:.1e} of the output's "
                             f"scale (tolerance {r.rtol:.0e})")
    print("\n".join(lines))
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from itpl.deploy.bench import SIGNIFICANCE, compare, read_results

    if args.compare:
        old, new = (read_results(p) for p in args.compare)
        pairs = compare(old, new, args.threshold / 100)
        for f in pairs:
            print(f"{'REGRESSION' if f['regressed'] else 'ok':<10} {f['model']} batch {f['batch']}: "
                  f"{f['old_ms']:.2f} -> {f['new_ms']:.2f} ms, {f['change']:+.1%} by {f['basis']} "
                  f"(Mann-Whitney p = {f['p_value']:.2g})")
        flagged = [f for f in pairs if f["regressed"]]
        if not flagged:
            print(f"compared {len(pairs)} model/batch pairs: none slower by more than "
                  f"{args.threshold:g}% with p < {SIGNIFICANCE:g}")
        return EXIT_ERROR if flagged else EXIT_OK
    if not args.models:
        raise ValueError("give models to time (.tflite files, built-in names or plans), or --compare")
    from itpl.api_deploy import bench as bench_models
    from itpl.pipeline import label_of

    labels: dict[str, str] = {}
    for spec in args.models:  # rows are keyed by label: keep repeated models apart
        label = label_of(spec)
        count = sum(1 for s in args.models[:len(labels)] if label_of(s) == label)
        labels[label if not count else f"{label}#{count + 1}"] = spec
    result = bench_models(labels, device=device(args, args.device), batch=args.batch,
                          threads=args.threads, rounds=args.rounds, progress=sys.stderr.isatty())
    print(result)
    if args.json:
        result.save(args.json)
    return EXIT_OK


def add_parsers(sub) -> None:
    """Add ``export`` and ``bench`` to the subcommands."""
    export = sub.add_parser("export", help="convert a model or plan to .tflite (one file per batch)")
    export.add_argument("model", help="built-in name, package.module:factory, or a *.plan.json")
    export.add_argument("-o", "--output", required=True,
                        help="output .tflite (with several --batch: OUT-b1.tflite, OUT-b4.tflite, ...)")
    export.add_argument("--batch", type=positive, nargs="+", default=[1], help="static batch sizes (default 1)")
    export.add_argument("--weights", help="state_dict (default: the plan's weights)")
    export.add_argument("--model-arg", action="append", type=model_arg, default=[], metavar="KEY=VALUE")
    export.add_argument("--input-shape", type=shape, metavar="C,H,W")
    from itpl.cli.int8 import add_export_args

    add_export_args(export)
    export.set_defaults(func=_cmd_export)

    bench = sub.add_parser("bench", help="time models at batch 1/4/8 on a device")
    bench.add_argument("models", nargs="*",
                       help=".tflite files, built-in names or *.plan.json (exported on the fly); "
                            "speedups are against the first")
    bench.add_argument("--batch", type=positive, nargs="+", default=[1, 4, 8],
                       help="batch sizes for models exported on the fly (default 1 4 8)")
    bench.add_argument("--threads", type=positive, default=1, help="interpreter threads (default 1)")
    bench.add_argument("--device", default="local", help=DEVICE_HELP)
    add_device_args(bench)
    bench.add_argument("--rounds", type=positive, default=10,
                       help="interleaved rounds at least (default 10; up to 4x as many until "
                            "each speedup's 95%% interval is within +-1%%)")
    bench.add_argument("--json", help="write results with device facts to this file")
    bench.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                       help="flag model/batch medians that regressed; exit 1 if any did")
    bench.add_argument("--threshold", type=nonnegative_float, default=5.0,
                       help="--compare flags a slowdown larger than this, percent, that is also "
                            "statistically significant (default 5)")
    bench.set_defaults(func=_cmd_bench)
