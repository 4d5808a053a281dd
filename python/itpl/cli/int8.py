"""``itpl export --quantize int8``: its options and the export itself (beside
:mod:`itpl.cli.deploy`, which stays a table of the fp32 paths)."""

from __future__ import annotations

import argparse
import sys

from itpl.cli.args import positive, positive_float


def add_export_args(export: argparse.ArgumentParser) -> None:
    """The int8 options of ``itpl export``."""
    from itpl.deploy.quantize import DEFAULT_MAX_ERROR, DEFAULT_MIN_AGREEMENT

    export.add_argument("--quantize", choices=["int8"],
                        help="int8: full-integer static quantization (int8 weights per channel, "
                             "int8 activations calibrated on --data), checked against the fp32 "
                             "model on held-out images")
    export.add_argument("--data", help="with --quantize int8: calibration images, an image folder "
                                       "or a .npy/.pt tensor file (as itpl prune --data)")
    export.add_argument("--samples", type=positive, default=128,
                        help="calibration images (default 128)")
    export.add_argument("--check-samples", type=positive, default=64,
                        help="further images, never used in calibration, for the int8 check "
                             "(default 64)")
    export.add_argument("--seed", type=int, default=0, help="seed of the image draw (default 0)")
    export.add_argument("--preset", choices=["imagenet", "cifar"],
                        help="image resizing and normalisation (default: the model's)")
    export.add_argument("--mean", type=float, nargs="+", help="override the preset's channel means")
    export.add_argument("--std", type=float, nargs="+", help="override the preset's channel stds")
    export.add_argument("--max-error", type=positive_float, default=DEFAULT_MAX_ERROR,
                        help="int8 check: largest ||int8 - fp32|| / ||fp32|| of the held-out "
                             f"outputs (default {DEFAULT_MAX_ERROR:g})")
    export.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                        help="int8 check: smallest share of held-out images with the fp32 "
                             f"model's top-1 class (default {DEFAULT_MIN_AGREEMENT:g})")


def check_export_args(args) -> None:
    """Refusals before any work: int8 without data, data without int8."""
    from itpl.deploy.quantize import NO_DATA

    if args.quantize == "int8" and not args.data:
        raise ValueError(NO_DATA)
    if args.data and args.quantize != "int8":
        raise ValueError("--data calibrates an int8 export: add --quantize int8")
    if not 0 <= args.min_agreement <= 1:
        raise ValueError(f"--min-agreement must be between 0 and 1, got {args.min_agreement:g}")


def _preset_name(args) -> str:
    from itpl.model.source import ModelSource

    if args.preset:
        return args.preset
    if args.model.endswith(".json"):
        from itpl.model.plan import read_plan

        plan = read_plan(args.model)
        source = ModelSource(plan.model, dict(plan.model_kwargs))
    else:
        source = ModelSource(args.model, dict(args.model_arg))
    return source.preset or "imagenet"


def export_int8_files(args, model, shape, paths: dict[int, str], stage) -> list[str]:
    """Calibrate, quantize and check one int8 file per batch; the report lines."""
    from itpl.deploy.quantize import export_int8, split_images
    from itpl.train.data import load_calibration, preset

    name = _preset_name(args)
    images = load_calibration(args.data, shape, samples=args.samples + args.check_samples,
                              seed=args.seed, norm=preset(name, args.mean, args.std),
                              progress=not getattr(args, "quiet", False) and sys.stderr.isatty())
    calibration, held_out = split_images(images.numpy(), args.check_samples)
    lines = [f"calibrated on {len(calibration)} images from {args.data} ({name}), "
             f"{len(held_out)} held out for the check"]
    for batch, path in paths.items():
        r, check = export_int8(model, shape, stage.path(path), calibration, held_out, batch=batch,
                               max_error=args.max_error, min_agreement=args.min_agreement)
        lines.append(f"wrote {path}: int8, batch {batch}; {check.line()}")
    return lines
