"""``itpl prune`` and ``itpl profile``: flags -> :class:`itpl.PruneConfig`, budgets
and profiles -> the library, results -> the console. Heavy imports are lazy."""

from __future__ import annotations

import argparse
import json
import sys

from itpl.cli.args import (DEVICE_HELP, EXIT_OK, add_device_args, add_model_args,
                           default_prefix, device, flag_message, nonnegative, positive,
                           positive_float, progress, scales, source)


def _budget(args):
    from itpl.budget import Flops, Latency, Params

    if args.flops is not None:
        return Flops(args.flops)
    if args.params is not None:
        return Params(args.params)
    if args.flops_ratio is not None:
        return Flops(ratio=args.flops_ratio)
    if args.params_ratio is not None:
        return Params(ratio=args.params_ratio)
    if args.latency_ms is not None:
        return Latency(ms=args.latency_ms)
    return Latency(ratio=args.latency_ratio)


def config(args):
    """The :class:`itpl.PruneConfig` of ``itpl prune``'s flags."""
    from itpl.config import PruneConfig
    from itpl.method.widths import AllowedWidths

    return PruneConfig(
        samples=args.samples, seed=args.seed, debiased=args.debiased, beta=args.beta,
        beta_scales=args.beta_scales, widths=AllowedWidths(args.alpha_min, args.round_to),
        objective=args.objective, rounding=args.rounding, criterion=args.criterion,
        threads=args.threads, refine=not args.no_refine, preset=args.preset,
        progress=progress(args))


def _cmd_prune(args: argparse.Namespace) -> int:
    from itpl.model.cost import format_amount
    from itpl.pipeline import prune_model, save_result
    from itpl.report import summary_lines

    budget = _budget(args)
    settings = config(args)
    src = source(args)
    prefix = args.output or f"{default_prefix(args.model)}-pruned"
    profile, dev = _prune_profile(args, budget, prefix)
    data, label = _calibration(args, src)
    result = prune_model(src, budget, weights=args.weights, input_shape=args.input_shape,
                         config=settings, data=data, data_label=label, profile=profile,
                         device=dev)
    if not result.pruned:
        unpruned = result.cost.full()
        fmt = (lambda v: f"{v:.3f}") if budget.kind == "latency" else format_amount
        print(f"no pruning: the budget {fmt(result.budget)} {result.cost.unit} is at or "
              f"above the unpruned {budget.kind}, {fmt(unpruned)} {result.cost.unit}; nothing written")
        return EXIT_OK
    verified = _verify(args, result, dev) if args.verify else None
    weights_path, plan_path = save_result(result, prefix, plot=args.plot)
    if args.json:
        from itpl.util.fileio import finite_json

        print(json.dumps(finite_json(result.plan.to_dict()), indent=1))
    else:
        print("\n".join(summary_lines(result) + ([verified] if verified else [])))
        print(f"wrote {plan_path} and {weights_path}")
    return EXIT_OK


def _prune_profile(args, budget, prefix):
    """(profile or a function making one, device) for itpl prune's latency options."""
    from itpl.latency.profile import check_device, check_precision, read_profile

    dev = device(args, args.device) if args.device else None
    if budget.kind != "latency":
        if args.profile or args.quantize:
            raise ValueError(f"{'--profile' if args.profile else '--quantize'} goes with "
                             "--latency-ms or --latency-ratio")
        return None, dev
    if args.profile:
        profile = read_profile(args.profile)
        if args.quantize:
            check_precision(profile, args.quantize, where=f"profile '{args.profile}'")
        if dev is None and args.verify:  # verify where the profile was measured
            where = profile.device.get("connection") or profile.device.get("device", "local")
            dev = device(args, where, profile.device.get("cpu_mask"))
        check_device(profile, dev.facts(profile.device.get("threads")) if dev else None,
                     args.latency_threads, where=f"profile '{args.profile}'")
        return profile, dev
    if dev is None:
        raise ValueError("a latency budget needs a device profile: pass --profile FILE "
                         "(from itpl profile) or --device local to profile first")

    def make(graph):
        from itpl.report import profile_lines

        path = f"{prefix}.profile.json"
        made = _profile_to(args, graph, dev, path, threads=args.latency_threads or 1,
                           round_to=args.round_to, alpha_min=args.alpha_min,
                           precision=args.quantize or "fp32")
        if not args.quiet:
            print("\n".join(profile_lines(made) + [f"wrote {path}"]), file=sys.stderr)
        return made

    return make, dev


def _verify(args, result, dev) -> str:
    """Time the pruned model beside the unpruned one on the device, record it in the
    plan and return the report line."""
    from itpl.latency.verify import verify_latency
    from itpl.pipeline import load_model

    profile = result.profile
    threads = profile.device["threads"] if profile else args.latency_threads or 1
    batch = profile.settings["batch"] if profile else 1
    dev = dev or device(args, "local")
    unpruned, _ = load_model(source(args), args.weights, args.input_shape)
    b = result.plan.budget
    checked = verify_latency(result.model, unpruned, result.graph.input_shape, dev,
                             threads=threads, batch=batch, budget=b,
                             dtype=profile.precision if profile else "fp32")
    b["verified"] = checked.to_dict()
    return checked.line(b)


def _profile_to(args, graph, dev, path, **options):
    """Profile ``graph`` on ``dev`` into ``path`` (resuming from its cache),
    warning when the widths are not multiples of the device's channel tile."""
    from itpl.latency.measure import profile_to_file
    from itpl.report import stability_warning, tile_warning

    profile = profile_to_file(graph, dev, path, name=args.model, kwargs=dict(args.model_arg),
                              progress=progress(args), **options)
    for warning in (tile_warning(profile), stability_warning(profile)):
        if warning:
            print(f"itpl: warning: {flag_message(warning, args.flags)}", file=sys.stderr)
    return profile


def _cmd_profile(args: argparse.Namespace) -> int:
    from itpl.model.graph import analyze
    from itpl.pipeline import load_model
    from itpl.report import profile_lines

    model, shape = load_model(source(args), args.weights, args.input_shape)
    graph = analyze(model, shape)
    dev = device(args, args.device)
    output = args.output or f"{default_prefix(args.model)}-{dev.name}.profile.json"
    profile = _profile_to(
        args, graph, dev, output, threads=args.threads, batch=args.batch, grid=args.grid,
        round_to=args.round_to, alpha_min=args.alpha_min, calibrate=args.calibrate,
        validate=args.validate, seed=args.seed, rounds=args.rounds,
        precision=args.quantize or "fp32",
    )
    if args.json:
        print(json.dumps({k: v for k, v in profile.to_dict().items() if k != "samples"}, indent=1))
    else:
        print("\n".join(profile_lines(profile) + [f"wrote {output}"]))
    return EXIT_OK


def _calibration(args, src):
    """(loader of the batch for an input shape, or None; label) from --data."""
    if not args.data:
        return None, None
    from itpl.train.data import load_calibration, preset

    name = args.preset or src.preset or "imagenet"
    norm = preset(name, args.mean, args.std)

    def load(shape):
        batch = load_calibration(args.data, shape, samples=args.samples, seed=args.seed,
                                 norm=norm, progress=progress(args))
        if batch.shape[0] < args.samples:
            print(f"itpl: note: {args.data} has {batch.shape[0]} samples, fewer than --samples "
                  f"{args.samples}; using all of them", file=sys.stderr)
        return batch

    return load, f"{args.data} ({name})"


def add_parsers(sub) -> None:
    """Add ``prune`` and ``profile`` to the subcommands."""
    prune = sub.add_parser("prune", help="prune a model to a FLOPs, params or latency budget",
                           description="nHSIC importance, Eq. 11 widths, physical channel removal.")
    add_model_args(prune)
    budget = prune.add_mutually_exclusive_group(required=True)
    budget.add_argument("--flops", metavar="AMOUNT", help="MAC budget, e.g. 283M")
    budget.add_argument("--flops-ratio", type=float, metavar="R", help="MAC budget as a ratio, e.g. 0.5")
    budget.add_argument("--params", metavar="AMOUNT", help="parameter budget, e.g. 2M")
    budget.add_argument("--params-ratio", type=float, metavar="R", help="parameter budget as a ratio")
    budget.add_argument("--latency-ms", type=positive_float, metavar="MS",
                        help="latency budget in ms on the profiled device, e.g. 15")
    budget.add_argument("--latency-ratio", type=positive_float, metavar="R",
                        help="latency budget as a ratio of the unpruned model's, e.g. 0.54")
    prune.add_argument("--profile", help="device profile for a latency budget (from itpl profile)")
    prune.add_argument("--device", help="with a latency budget and no --profile: profile this "
                                        "device first (local, adb, adb:SERIAL, adb:HOST:PORT, "
                                        "adb-usb); with --verify: where to time (default: "
                                        "the profile's device)")
    add_device_args(prune)
    prune.add_argument("--latency-threads", type=positive, metavar="N",
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
    prune.add_argument("--samples", type=positive, default=256, help="calibration samples (default 256)")
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
    prune.add_argument("--beta-scales", type=scales, default=None, metavar="S,S,...",
                       help="multiples of the default beta to try with the log objective, "
                            "keeping the one whose pruned outputs stay closest to the "
                            "unpruned model's on the calibration images (default 1,0.5,2; "
                            "1 turns the check off; ignored with --beta)")
    prune.add_argument("--alpha-min", type=float, default=0.1,
                       help="smallest width ratio of any group (default 0.1)")
    prune.add_argument("--round-to", type=positive,
                       help="widths are multiples of this (default 8; for latency budgets the "
                            "profile's, the device's channel tile)")
    prune.add_argument("--criterion", choices=["l1", "fpgm"], default="l1",
                       help="which channels a group keeps (default l1)")
    prune.add_argument("--threads", type=positive, help="threads for the nHSIC core (default: all cores)")
    prune.add_argument("-o", "--output", metavar="PREFIX",
                       help="write PREFIX.plan.json and PREFIX.pt (default MODEL-pruned)")
    prune.add_argument("--plot", metavar="DIR", help="write nhsic.png and widths.png into DIR")
    prune.add_argument("--json", action="store_true", help="print the plan as JSON")
    prune.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    prune.set_defaults(func=_cmd_prune)

    prof = sub.add_parser("profile", help="time a model's layers on a device and fit its latency model",
                          description="Per-layer micro-models on a width grid, a bilinear fit per "
                                      "layer, whole-model calibration and validation.")
    add_model_args(prof)
    prof.add_argument("--device", default="local", help=DEVICE_HELP)
    add_device_args(prof)
    prof.add_argument("-o", "--output", help="profile file (default MODEL-DEVICE.profile.json)")
    prof.add_argument("--threads", type=positive, default=1, help="interpreter threads (default 1)")
    prof.add_argument("--batch", type=positive, default=1, help="batch size (default 1)")
    prof.add_argument("--grid", type=positive, default=5,
                      help="width levels per side of a layer (default 5: up to 25 samples a layer)")
    prof.add_argument("--round-to", type=positive,
                      help="widths are multiples of this (default: the device's channel tile)")
    prof.add_argument("--alpha-min", type=float, default=0.1, help="smallest width ratio (default 0.1)")
    prof.add_argument("--calibrate", type=positive, default=24,
                      help="whole-model configurations for the calibration (default 24, at least 8)")
    prof.add_argument("--validate", type=nonnegative, default=20,
                      help="random and as many solver-like whole-model configurations to check "
                           "the prediction (default 20 each)")
    prof.add_argument("--seed", type=int, default=0, help="seed of the random configurations")
    prof.add_argument("--rounds", type=positive, default=3,
                      help="timing rounds per sample beside the reference (default 3; up to 3x "
                           "as many where they disagree)")
    prof.add_argument("--quantize", choices=["int8"],
                      help="int8: time full-integer int8 models (layers, channel tile, whole "
                           "models) for int8 latency budgets; the profile records its precision")
    prof.add_argument("--json", action="store_true", help="print the profile (without samples) as JSON")
    prof.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    prof.set_defaults(func=_cmd_profile)
