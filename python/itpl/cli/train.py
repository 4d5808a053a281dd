"""``itpl finetune`` and ``itpl eval``: the CLI of :mod:`itpl.train.finetune`. Heavy
imports happen inside the handlers."""

from __future__ import annotations

import argparse
import json
import os

from itpl.cli.args import EXIT_OK, model_arg, positive, progress
from itpl.cli.args import shape as shape_type


def _labelled(args, spec: str):
    """(model, input shape, [splits]) for finetune (train, val) and eval (--split)."""
    from itpl.model.source import ModelSource
    from itpl.pipeline import load_any
    from itpl.train.data import load_split, preset
    from itpl.train.finetune import check_classes

    if spec.endswith(".tflite"):  # itpl eval of an exported (fp32 or int8) file
        from itpl.deploy.quantize import TFLiteClassifier

        if args.command != "eval":
            raise ValueError(f"'{spec}': a .tflite file can be scored (itpl eval), not trained")
        model = TFLiteClassifier(spec)
        data = load_split(args.data, args.split, model.input_shape,
                          norm=preset(args.preset or "imagenet"), progress=progress(args))
        check_classes(model, data, model.input_shape)
        return model, model.input_shape, [data]
    model, shape, _ = load_any(spec, args.weights, args.input_shape, dict(args.model_arg))
    if spec.endswith(".json"):
        from itpl.model.plan import read_plan

        spec = read_plan(spec).model
    norm = preset(args.preset or ModelSource(spec).preset or "imagenet")
    splits = ("train", "val") if args.command == "finetune" else (args.split,)
    data = [load_split(args.data, s, shape, norm=norm, progress=progress(args)) for s in splits]
    check_classes(model, data[-1], shape)
    return model, shape, data


def _cmd_finetune(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from itpl.pipeline import load_any
    from itpl.train.finetune import FinetuneConfig, evaluate, finetune

    config = FinetuneConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing, kd_temperature=args.kd_temperature,
        kd_weight=args.kd_weight if args.kd_weight is not None else (0.5 if args.teacher else 0.0),
        augment=not args.no_augment, seed=args.seed)
    config.check()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:  # launched by torchrun: one process per rank, gloo on the CPU
        import torch.distributed as dist

        dist.init_process_group("gloo")
    lead = not distributed or int(os.environ.get("RANK", "0")) == 0
    model, shape, (train, val) = _labelled(args, args.model)
    teacher = None
    if args.teacher:
        from itpl.train.finetune import check_classes

        teacher = load_any(args.teacher, args.teacher_weights)[0]
        check_classes(teacher, val, shape)  # its soft labels must cover the same classes
    out = args.output or f"{os.path.basename(args.model).split('.')[0]}-finetuned"
    plan = None
    if args.model.endswith(".json"):  # written with each best OUT.pt, never apart from it
        from itpl.model.plan import read_plan

        plan = read_plan(args.model)
        plan.weights = os.path.basename(f"{out}.pt")
        plan = plan.to_dict()
    before = evaluate(model, val)
    result = finetune(model, train, val, config, out, teacher=teacher, resume=args.resume,
                      progress=lead and not args.quiet, plan=plan)
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    if not lead:
        return EXIT_OK
    if args.json:
        print(json.dumps({"before": before, "best_epoch": result.best_epoch,
                          "best_top1": result.best_top1, "history": result.history,
                          "config": asdict(config)}, indent=1))
    else:
        print(f"val top-1 {before['top1']:.1%} before, {result.best_top1:.1%} best "
              f"(epoch {result.best_epoch} of {config.epochs}); wrote {out}.pt"
              + (f" and {out}.plan.json" if args.model.endswith(".json") else "")
              + f", {out}.last.ckpt, {out}.history.json")
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from itpl.train.finetune import evaluate

    model, _, (data,) = _labelled(args, args.model)
    metrics = evaluate(model, data)
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        print(f"{args.model} on {args.data} ({args.split}): top-1 {metrics['top1']:.2%}, "
              f"top-5 {metrics['top5']:.2%} ({metrics['samples']} images)")
    return EXIT_OK


def add_parsers(sub) -> None:
    """Add ``finetune`` and ``eval`` to the subcommands."""
    def data_args(p):
        p.add_argument("model", help="a *.plan.json (pruned model with weights), a built-in "
                                     "name or package.module:factory; eval: also an exported "
                                     ".tflite, fp32 or int8 (preset imagenet unless --preset)")
        p.add_argument("--data", required=True,
                       help="folder with train/ and val/ (one subfolder per class), or "
                            "train.pt/val.pt (.npz) holding images and labels")
        p.add_argument("--weights", help="state_dict (default: the plan's weights)")
        p.add_argument("--model-arg", action="append", type=model_arg, default=[],
                       metavar="KEY=VALUE", help="model constructor argument, e.g. num_classes=10")
        p.add_argument("--input-shape", type=shape_type, metavar="C,H,W")
        p.add_argument("--preset", choices=["imagenet", "cifar"],
                       help="image resizing and normalisation (default: the model's)")
        p.add_argument("--json", action="store_true", help="print the results as JSON")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    ft = sub.add_parser("finetune", help="recover accuracy: train a pruned model on labelled data",
                        description="SGD + momentum, cosine schedule with warm-up, label "
                                    "smoothing, crop/flip, optional distillation. Runs under "
                                    "torchrun as DistributedDataParallel.")
    data_args(ft)
    ft.add_argument("--epochs", type=positive, required=True)
    ft.add_argument("-o", "--output", metavar="PREFIX",
                    help="writes PREFIX.pt (best), PREFIX.last.ckpt, PREFIX.history.json and, "
                         "for a plan, PREFIX.plan.json (default MODEL-finetuned)")
    ft.add_argument("--batch-size", type=positive, default=64, help="per process (default 64)")
    ft.add_argument("--lr", type=float, default=0.05, help="peak learning rate (default 0.05)")
    ft.add_argument("--momentum", type=float, default=0.9)
    ft.add_argument("--weight-decay", type=float, default=5e-4)
    ft.add_argument("--warmup-epochs", type=float, default=1.0)
    ft.add_argument("--label-smoothing", type=float, default=0.1)
    ft.add_argument("--no-augment", action="store_true", help="no random crop and flip")
    ft.add_argument("--teacher", help="distil from this model or plan (e.g. the unpruned model)")
    ft.add_argument("--teacher-weights", help="state_dict of the teacher")
    ft.add_argument("--kd-weight", type=float,
                    help="weight of the distillation loss (default 0.5 with --teacher, else 0)")
    ft.add_argument("--kd-temperature", type=float, default=4.0)
    ft.add_argument("--seed", type=int, default=0, help="seed of the data order and augmentation")
    ft.add_argument("--resume", action="store_true", help="continue from PREFIX.last.ckpt")
    ft.set_defaults(func=_cmd_finetune)

    ev = sub.add_parser("eval", help="top-1/top-5 accuracy of a model on labelled data")
    data_args(ev)
    ev.add_argument("--split", default="val", help="which split of --data (default val)")
    ev.set_defaults(func=_cmd_eval)
