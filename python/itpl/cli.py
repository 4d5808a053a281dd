"""The ``itpl`` command line: parse, call the library, print. Heavy imports are lazy."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_ERROR = 1


def _cmd_info(args: argparse.Namespace) -> int:
    from itpl import __version__, hsic
    from itpl._memory import memory_policy

    facts = {
        "version": __version__,
        "openmp": hsic.has_openmp,
        "threads": hsic.default_threads(),
        "gram_kernel": hsic.gram_kernel(),
        "freed_memory": memory_policy(),
    }
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for key, value in facts.items():
            print(f"{key:12s} {value}")
    return EXIT_OK


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 3,224,224") from None
    if not shape or any(v < 1 for v in shape):
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 3,224,224")
    return shape


def _number(kind, low: float, words: str, *, above: bool = False):
    """An argparse type: a finite ``kind`` >= ``low`` (> with ``above``), checked
    while parsing so no command starts work it cannot finish; NaN is refused
    (a NaN threshold would pass every comparison)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
        if not (math.isfinite(value) and (value > low if above else value >= low)):
            raise argparse.ArgumentTypeError(f"{text} must be {words}")
        return value

    return parse


_positive = _number(int, 1, "at least 1")
_nonnegative = _number(int, 0, "0 or more")
_positive_float = _number(float, 0, "a positive number", above=True)
_nonnegative_float = _number(float, 0, "a finite number, 0 or more")


def _scales(text: str) -> tuple[float, ...]:
    """``1,0.5,2`` -> (1.0, 0.5, 2.0), each a positive number."""
    return tuple(_positive_float(item) for item in text.split(","))


def _model_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="built-in name (mobilenet_v1, mobilenet_v2, resnet50, resnet20, resnet56, "
                        "vgg16) or package.module:factory returning an nn.Module")
    p.add_argument("--model-arg", action="append", type=_model_arg, default=[], metavar="KEY=VALUE",
                   help="keyword argument of the model constructor, e.g. num_classes=100 (repeatable)")
    p.add_argument("--weights", help="state_dict file to load into the model")
    p.add_argument("--input-shape", type=_shape, metavar="C,H,W",
                   help="one sample's shape, where the model does not say (e.g. 3,224,224)")


def _progress(args) -> bool:
    """Progress bars on a terminal only: redraws would litter logs and pipes."""
    return not args.quiet and sys.stderr.isatty()


def _source(args):
    from itpl.models.source import ModelSource

    return ModelSource(args.model, dict(args.model_arg))


def _cmd_prune(args: argparse.Namespace) -> int:
    from itpl.cost import format_amount, parse_amount
    from itpl.workflow import Budget, prune_model, save_result, summary_lines

    if args.flops is not None:
        budget = Budget("flops", value=parse_amount(args.flops))
    elif args.params is not None:
        budget = Budget("params", value=parse_amount(args.params))
    elif args.flops_ratio is not None:
        budget = Budget("flops", ratio=args.flops_ratio)
    elif args.params_ratio is not None:
        budget = Budget("params", ratio=args.params_ratio)
    elif args.latency_ms is not None:
        budget = Budget("latency", value=args.latency_ms)
    else:
        budget = Budget("latency", ratio=args.latency_ratio)
    source = _source(args)
    prefix = args.output or f"{args.model.replace(':', '_').replace('.', '_')}-pruned"
    profile, device = _prune_profile(args, budget, prefix)
    data, label = _calibration(args, source)
    result = prune_model(
        source, budget, weights=args.weights, input_shape=args.input_shape, data=data,
        data_label=label, profile=profile, seed=args.seed, samples=args.samples,
        debiased=args.debiased, beta=args.beta, alpha_min=args.alpha_min, round_to=args.round_to,
        objective=args.objective, rounding=args.rounding, beta_scales=args.beta_scales,
        criterion=args.criterion, num_threads=args.threads,
        progress=_progress(args), device=None if args.no_refine else device,
    )
    if not result.pruned:
        unpruned = result.cost.full()
        fmt = (lambda v: f"{v:.3f}") if budget.kind == "latency" else format_amount
        print(f"no pruning: the budget {fmt(result.budget)} {result.cost.unit} is at or "
              f"above the unpruned {budget.kind}, {fmt(unpruned)} {result.cost.unit}; nothing written")
        return EXIT_OK
    verified = _verify(args, result, device) if args.verify else None
    weights_path, plan_path = save_result(result, prefix, plot=args.plot)
    if args.json:
        from itpl.fileio import finite_json

        print(json.dumps(finite_json(result.plan.to_dict()), indent=1))
    else:
        print("\n".join(summary_lines(result) + ([verified] if verified else [])))
        print(f"wrote {plan_path} and {weights_path}")
    return EXIT_OK


def _device(args, spec: str, cpu_mask: str | None = None):
    from itpl.devices import get_device

    return get_device(spec, benchmark_binary=args.benchmark_binary,
                      cpu_mask=args.cpu_mask or cpu_mask)


def _prune_profile(args, budget, prefix):
    """(profile or a function making one, device) for itpl prune's latency options."""
    from itpl.profile import check_device, check_precision, read_profile

    device = _device(args, args.device) if args.device else None
    if budget.kind != "latency":
        if args.profile or args.quantize:
            raise ValueError(f"{'--profile' if args.profile else '--quantize'} goes with "
                             "--latency-ms or --latency-ratio")
        return None, device
    if args.profile:
        profile = read_profile(args.profile)
        if args.quantize:
            check_precision(profile, args.quantize, where=f"profile '{args.profile}'")
        if device is None and args.verify:  # verify where the profile was measured
            where = profile.device.get("connection") or profile.device.get("device", "local")
            device = _device(args, where, profile.device.get("cpu_mask"))
        check_device(profile, device.facts(profile.device.get("threads")) if device else None,
                     args.latency_threads, where=f"profile '{args.profile}'")
        return profile, device
    if device is None:
        raise ValueError("a latency budget needs a device profile: pass --profile FILE "
                         "(from itpl profile) or --device local to profile first")

    def make(graph):
        from itpl.profile import summary_lines

        path = f"{prefix}.profile.json"
        made = _profile_to(args, graph, device, path, threads=args.latency_threads or 1,
                           round_to=args.round_to, alpha_min=args.alpha_min,
                           precision=args.quantize or "fp32")
        if not args.quiet:
            print("\n".join(summary_lines(made) + [f"wrote {path}"]), file=sys.stderr)
        return made

    return make, device


def _verify(args, result, device) -> str:
    """Time the pruned model beside the unpruned one on the device, record it in the
    plan and return the report line."""
    from itpl.verify import verify_latency
    from itpl.workflow import load_model

    profile = result.profile
    threads = profile.device["threads"] if profile else args.latency_threads or 1
    batch = profile.settings["batch"] if profile else 1
    device = device or _device(args, "local")
    unpruned, _ = load_model(_source(args), args.weights, args.input_shape)
    b = result.plan.budget
    checked = verify_latency(result.model, unpruned, result.graph.input_shape, device,
                             threads=threads, batch=batch, budget=b,
                             dtype=profile.precision if profile else "fp32")
    b["verified"] = checked.to_dict()
    return checked.line(b)


def _profile_to(args, graph, device, path, **options):
    """Profile ``graph`` on ``device`` into ``path`` (resuming from its cache),
    warning when the widths are not multiples of the device's channel tile."""
    from itpl.profile import profile_to_file, stability_warning, tile_warning

    profile = profile_to_file(graph, device, path, name=args.model, kwargs=dict(args.model_arg),
                              progress=_progress(args), **options)
    for warning in (tile_warning(profile), stability_warning(profile)):
        if warning:
            print(f"itpl: warning: {warning}", file=sys.stderr)
    return profile


def _cmd_profile(args: argparse.Namespace) -> int:
    from itpl.graph import analyze
    from itpl.profile import summary_lines
    from itpl.workflow import load_model

    model, shape = load_model(_source(args), args.weights, args.input_shape)
    graph = analyze(model, shape)
    device = _device(args, args.device)
    output = args.output or f"{args.model.replace(':', '_').replace('.', '_')}-{device.name}.profile.json"
    profile = _profile_to(
        args, graph, device, output, threads=args.threads, batch=args.batch, grid=args.grid,
        round_to=args.round_to, alpha_min=args.alpha_min, calibrate=args.calibrate,
        validate=args.validate, seed=args.seed, rounds=args.rounds,
        precision=args.quantize or "fp32",
    )
    if args.json:
        print(json.dumps({k: v for k, v in profile.to_dict().items() if k != "samples"}, indent=1))
    else:
        print("\n".join(summary_lines(profile) + [f"wrote {output}"]))
    return EXIT_OK


def _calibration(args, source):
    """(loader of the batch for an input shape, or None; label) from --data."""
    if not args.data:
        return None, None
    from itpl.data import load_calibration, preset

    name = args.preset or source.preset or "imagenet"
    norm = preset(name, args.mean, args.std)

    def load(shape):
        batch = load_calibration(args.data, shape, samples=args.samples, seed=args.seed,
                                 norm=norm, progress=_progress(args))
        if batch.shape[0] < args.samples:
            print(f"itpl: note: {args.data} has {batch.shape[0]} samples, fewer than --samples "
                  f"{args.samples}; using all of them", file=sys.stderr)
        return batch

    return load, f"{args.data} ({name})"


def _cmd_inspect(args: argparse.Namespace) -> int:
    from itpl.cost import build_cost, format_amount
    from itpl.graph import analyze
    from itpl.workflow import load_model

    if args.plan:
        from itpl.plan import build_pruned, read_plan

        plan = read_plan(args.plan)
        model, shape = build_pruned(plan), tuple(plan.input_shape)
        name = f"{plan.model} (pruned, {args.plan})"
    elif args.model:
        model, shape = load_model(_source(args), args.weights, args.input_shape)
        name = args.model
    else:
        raise ValueError("give a plan file or --model")
    graph = analyze(model, shape)
    flops, params = build_cost(graph, "flops").full(), build_cost(graph, "params").full()
    groups = [{"index": g.index, "root": g.root, "width": g.width, "layers": g.members}
              for g in graph.groups]
    if args.json:
        print(json.dumps({"model": name, "input_shape": list(shape), "flops": flops,
                          "params": params, "groups": groups}, indent=1))
        return EXIT_OK
    print(f"{name}: input {'x'.join(map(str, shape))}, {format_amount(flops)} MACs, "
          f"{format_amount(params)} params, {len(groups)} prunable groups")
    print(f"{'group':>5}  {'root layer':<32} {'width':>6}  layers")
    for g in groups:
        print(f"{g['index']:>5}  {g['root'][-32:]:<32} {g['width']:>6}  {len(g['layers'])}")
    return EXIT_OK


def _export_paths(output: str, batches: list[int]) -> dict[int, str]:
    if len(batches) == 1:
        return {batches[0]: output}
    stem = output[: -len(".tflite")] if output.endswith(".tflite") else output
    return {b: f"{stem}-b{b}.tflite" for b in batches}


def _cmd_export(args: argparse.Namespace) -> int:
    from itpl.export import export_tflite
    from itpl.workflow import load_any

    from itpl.cli_int8 import check_export_args, export_int8_files

    check_export_args(args)
    model, shape, label = load_any(args.model, args.weights, args.input_shape, dict(args.model_arg))
    from itpl.fileio import staged_outputs

    lines = []
    with staged_outputs() as stage:  # all batch files appear together, or none
        if args.quantize == "int8":
            lines = export_int8_files(args, model, shape, _export_paths(args.output, args.batch),
                                      stage)
        for batch, path in _export_paths(args.output, args.batch).items():
            if args.quantize:
                break
            r = export_tflite(model, shape, stage.path(path), batch=batch)
            lines.append(f"wrote {path}: batch {batch}, max |tflite - torch| = "
                         f"{r.max_abs_diff:.2e}, {r.relative_diff:.1e} of the output's scale "
                         f"(tolerance {r.rtol:.0e})")
    print("\n".join(lines))
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from itpl import bench
    from itpl.export import export_tflite
    from itpl.workflow import load_any

    if args.compare:
        old, new = (bench.read_results(p) for p in args.compare)
        pairs = bench.compare(old, new, args.threshold / 100)
        for f in pairs:
            print(f"{'REGRESSION' if f['regressed'] else 'ok':<10} {f['model']} batch {f['batch']}: "
                  f"{f['old_ms']:.2f} -> {f['new_ms']:.2f} ms, {f['change']:+.1%} by {f['basis']} "
                  f"(Mann-Whitney p = {f['p_value']:.2g})")
        flagged = [f for f in pairs if f["regressed"]]
        if not flagged:
            print(f"compared {len(pairs)} model/batch pairs: none slower by more than "
                  f"{args.threshold:g}% with p < {bench.SIGNIFICANCE:g}")
        return EXIT_ERROR if flagged else EXIT_OK
    if not args.models:
        raise ValueError("give models to time (.tflite files, built-in names or plans), or --compare")
    device = _device(args, args.device)
    with tempfile.TemporaryDirectory(prefix="itpl-bench-") as tmp:
        models = []
        for i, spec in enumerate(args.models):
            if spec.endswith(".tflite"):
                models.append((os.path.basename(spec), {bench.tflite_batch(spec): spec}))
                continue
            model, shape, label = load_any(spec)
            files = {}
            for b in args.batch:
                files[b] = export_tflite(model, shape, os.path.join(tmp, f"{i}-b{b}.tflite"),
                                         batch=b).path
            models.append((label, files))
        seen: dict[str, int] = {}
        for i, (label, files) in enumerate(models):  # rows are keyed by label: keep them apart
            seen[label] = seen.get(label, 0) + 1
            if seen[label] > 1:
                models[i] = (f"{label}#{seen[label]}", files)
        result = bench.bench_models(models, device, threads=args.threads, rounds=args.rounds,
                                    progress=sys.stderr.isatty())
        bench.add_precisions(result, dict(models))
    print(bench.format_table(result))
    if args.json:
        from itpl.fileio import write_json

        write_json(args.json, result)
    return EXIT_OK


def _add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark-binary", metavar="FILE",
                        help="phones: push this benchmark_model build (default: the one in "
                             "/data/local/tmp on the phone)")
    parser.add_argument("--cpu-mask", metavar="HEX",
                        help="phones: pin benchmark_model to these cores with taskset, e.g. f0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itpl", description="On-device, latency-aware CNN pruning (ITPruner)."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="build facts: OpenMP, threads, Gram kernel")
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    info.set_defaults(func=_cmd_info)

    prune = sub.add_parser("prune", help="prune a model to a FLOPs, params or latency budget",
                           description="nHSIC importance, Eq. 11 widths, physical channel removal.")
    _add_model_args(prune)
    budget = prune.add_mutually_exclusive_group(required=True)
    budget.add_argument("--flops", metavar="AMOUNT", help="MAC budget, e.g. 283M")
    budget.add_argument("--flops-ratio", type=float, metavar="R", help="MAC budget as a ratio, e.g. 0.5")
    budget.add_argument("--params", metavar="AMOUNT", help="parameter budget, e.g. 2M")
    budget.add_argument("--params-ratio", type=float, metavar="R", help="parameter budget as a ratio")
    budget.add_argument("--latency-ms", type=_positive_float, metavar="MS",
                        help="latency budget in ms on the profiled device, e.g. 15")
    budget.add_argument("--latency-ratio", type=_positive_float, metavar="R",
                        help="latency budget as a ratio of the unpruned model's, e.g. 0.54")
    prune.add_argument("--profile", help="device profile for a latency budget (from itpl profile)")
    prune.add_argument("--device", help="with a latency budget and no --profile: profile this "
                                        "device first (local, adb, adb:SERIAL, adb:HOST:PORT, "
                                        "adb-usb); with --verify: where to time (default: "
                                        "the profile's device)")
    _add_device_args(prune)
    prune.add_argument("--latency-threads", type=_positive, metavar="N",
                       help="interpreter threads the latency is for (default: the profile's, or 1)")
    prune.add_argument("--quantize", choices=["int8"],
                       help="a latency budget for the int8 model: with --profile, the profile "
                            "must be int8 (it is used as such without this flag too); with "
                            "--device and no profile, profile int8 models")
    prune.add_argument("--verify", action="store_true",
                       help="export the pruned model and time it on the device (predicted vs measured)")
    prune.add_argument("--no-refine", action="store_true",
                       help="latency budgets with a device (--device, or --verify): trust the "
                            "profile's prediction instead of timing the solver's candidates on "
                            "the device and correcting until the measured latency meets the budget")
    prune.add_argument("--data", help="calibration images: an image folder, or a .npy/.pt tensor file "
                                      "(random inputs with a warning when absent)")
    prune.add_argument("--samples", type=_positive, default=256, help="calibration samples (default 256)")
    prune.add_argument("--seed", type=int, default=0, help="seed of the sample draw (default 0)")
    prune.add_argument("--preset", choices=["imagenet", "cifar"],
                       help="image resizing and normalisation (default: the model's)")
    prune.add_argument("--mean", type=float, nargs="+", help="override the preset's channel means")
    prune.add_argument("--std", type=float, nargs="+", help="override the preset's channel stds")
    prune.add_argument("--debiased", action="store_true", help="debiased HSIC estimator")
    prune.add_argument("--beta", type=float,
                       help="Eq. 9's beta (default: 1/(max-min) of the nHSIC sums, an e-fold spread)")
    prune.add_argument("--objective", choices=["log", "linear"], default="log",
                       help="log: uniform scaling tilted by importance (default); linear: the "
                            "paper's Eq. 11, which keeps groups whole or cuts them to the minimum")
    prune.add_argument("--rounding", choices=["greedy", "exact"], default="greedy",
                       help="greedy: nearest allowed widths repaired step by step (default); "
                            "exact: the best allowed widths for the objective (a MILP)")
    prune.add_argument("--beta-scales", type=_scales, default=None, metavar="S,S,...",
                       help="multiples of the default beta to try with the log objective, "
                            "keeping the one whose pruned outputs stay closest to the "
                            "unpruned model's on the calibration images (default 1,0.5,2; "
                            "1 turns the check off; ignored with --beta)")
    prune.add_argument("--alpha-min", type=float, default=0.1,
                       help="smallest width ratio of any group (default 0.1)")
    prune.add_argument("--round-to", type=_positive,
                       help="widths are multiples of this (default 8; for latency budgets the "
                            "profile's, the device's channel tile)")
    prune.add_argument("--criterion", choices=["l1", "fpgm"], default="l1",
                       help="which channels a group keeps (default l1)")
    prune.add_argument("--threads", type=_positive, help="threads for the nHSIC core (default: all cores)")
    prune.add_argument("-o", "--output", metavar="PREFIX",
                       help="write PREFIX.plan.json and PREFIX.pt (default MODEL-pruned)")
    prune.add_argument("--plot", metavar="DIR", help="write nhsic.png and widths.png into DIR")
    prune.add_argument("--json", action="store_true", help="print the plan as JSON")
    prune.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    prune.set_defaults(func=_cmd_prune)

    prof = sub.add_parser("profile", help="time a model's layers on a device and fit its latency model",
                          description="Per-layer micro-models on a width grid, a bilinear fit per "
                                      "layer, whole-model calibration and validation.")
    _add_model_args(prof)
    prof.add_argument("--device", default="local",
                      help="where to time: local (default); a phone: adb (the adb server's only "
                      "phone), adb:SERIAL (one of the server's), adb:HOST:PORT or "
                      "adb-usb[:SERIAL] (directly, no server)")
    _add_device_args(prof)
    prof.add_argument("-o", "--output", help="profile file (default MODEL-DEVICE.profile.json)")
    prof.add_argument("--threads", type=_positive, default=1, help="interpreter threads (default 1)")
    prof.add_argument("--batch", type=_positive, default=1, help="batch size (default 1)")
    prof.add_argument("--grid", type=_positive, default=5,
                      help="width levels per side of a layer (default 5: up to 25 samples a layer)")
    prof.add_argument("--round-to", type=_positive,
                      help="widths are multiples of this (default: the device's channel tile)")
    prof.add_argument("--alpha-min", type=float, default=0.1, help="smallest width ratio (default 0.1)")
    prof.add_argument("--calibrate", type=_positive, default=24,
                      help="whole-model configurations for the calibration (default 24, at least 8)")
    prof.add_argument("--validate", type=_nonnegative, default=20,
                      help="random and as many solver-like whole-model configurations to check "
                           "the prediction (default 20 each)")
    prof.add_argument("--seed", type=int, default=0, help="seed of the random configurations")
    prof.add_argument("--rounds", type=_positive, default=3,
                      help="timing rounds per sample beside the reference (default 3; up to 3x "
                           "as many where they disagree)")
    prof.add_argument("--quantize", choices=["int8"],
                      help="int8: time full-integer int8 models (layers, channel tile, whole "
                           "models) for int8 latency budgets; the profile records its precision")
    prof.add_argument("--json", action="store_true", help="print the profile (without samples) as JSON")
    prof.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    prof.set_defaults(func=_cmd_profile)

    inspect = sub.add_parser("inspect", help="groups, widths, FLOPs and params of a model or plan")
    inspect.add_argument("plan", nargs="?", help="a *.plan.json file (instead of --model)")
    inspect.add_argument("--model", help="built-in name or package.module:factory")
    inspect.add_argument("--model-arg", action="append", type=_model_arg, default=[],
                         metavar="KEY=VALUE", help="model constructor keyword argument")
    inspect.add_argument("--weights", help="state_dict file to load into the model")
    inspect.add_argument("--input-shape", type=_shape, metavar="C,H,W", help="one sample's shape")
    inspect.add_argument("--json", action="store_true", help="print as JSON")
    inspect.set_defaults(func=_cmd_inspect)

    export = sub.add_parser("export", help="convert a model or plan to .tflite (one file per batch)")
    export.add_argument("model", help="built-in name, package.module:factory, or a *.plan.json")
    export.add_argument("-o", "--output", required=True,
                        help="output .tflite (with several --batch: OUT-b1.tflite, OUT-b4.tflite, ...)")
    export.add_argument("--batch", type=_positive, nargs="+", default=[1], help="static batch sizes (default 1)")
    export.add_argument("--weights", help="state_dict (default: the plan's weights)")
    export.add_argument("--model-arg", action="append", type=_model_arg, default=[], metavar="KEY=VALUE")
    export.add_argument("--input-shape", type=_shape, metavar="C,H,W")
    from itpl.cli_int8 import add_export_args

    add_export_args(export, _positive, _positive_float)
    export.set_defaults(func=_cmd_export)

    bench = sub.add_parser("bench", help="time models at batch 1/4/8 on a device")
    bench.add_argument("models", nargs="*",
                       help=".tflite files, built-in names or *.plan.json (exported on the fly); "
                            "speedups are against the first")
    bench.add_argument("--batch", type=_positive, nargs="+", default=[1, 4, 8],
                       help="batch sizes for models exported on the fly (default 1 4 8)")
    bench.add_argument("--threads", type=_positive, default=1, help="interpreter threads (default 1)")
    bench.add_argument("--device", default="local",
                       help="where to time: local (default); a phone: adb (the adb server's only "
                       "phone), adb:SERIAL (one of the server's), adb:HOST:PORT or "
                       "adb-usb[:SERIAL] (directly, no server)")
    _add_device_args(bench)
    bench.add_argument("--rounds", type=_positive, default=10,
                       help="interleaved rounds at least (default 10; up to 4x as many until "
                            "each speedup's 95%% interval is within +-1%%)")
    bench.add_argument("--json", help="write results with device facts to this file")
    bench.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                       help="flag model/batch medians that regressed; exit 1 if any did")
    bench.add_argument("--threshold", type=_nonnegative_float, default=5.0,
                       help="--compare flags a slowdown larger than this, percent, that is also "
                            "statistically significant (default 5)")
    bench.set_defaults(func=_cmd_bench)
    from itpl.cli_train import add_training_parsers

    add_training_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors and --help: argparse has printed; return its code
        return int(exc.code or 0)
    if args.version:
        from itpl import __version__

        print(__version__)
        return EXIT_OK
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from itpl import interrupt

    interrupt.install()
    try:
        _check_outputs(args)
        code = args.func(args)
        interrupt.check()
        return code
    except KeyboardInterrupt:
        interrupt.finish()
        print("itpl: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # OSError: disk full, permissions, a folder as a file
        if interrupt.requested():  # e.g. Ctrl-C turned into an OSError by a blocking call
            print("itpl: interrupted", file=sys.stderr)
            return 130
        print(f"itpl: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:
        if not interrupt.requested():
            raise  # a bug: its traceback is the useful report
        print("itpl: interrupted", file=sys.stderr)  # NumPy turns a Ctrl-C during its
        return 130  # import into an ImportError
    finally:
        interrupt.finish()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, FileNotFoundError):
        where = f" '{exc.filename}'" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_outputs(args) -> None:
    """Refuse an unwritable output before any work (a profile takes minutes)."""
    from itpl.fileio import check_output, check_prefix

    output = getattr(args, "output", None)
    if args.command in ("prune", "finetune") and output:
        check_prefix(output)
    elif args.command == "profile" and output:
        check_output(output, "-o")
    elif args.command == "export":
        check_prefix(output)  # "-o DIR/" would write DIR/-b1.tflite with several batches
        for path in _export_paths(output, args.batch).values():
            check_output(path, "-o")
    if getattr(args, "json", None) and isinstance(args.json, str):  # bench --json FILE
        check_output(args.json, "--json")
    if getattr(args, "plot", None):
        check_output(os.path.join(args.plot, "nhsic.png"), "--plot")


if __name__ == "__main__":
    sys.exit(main())
