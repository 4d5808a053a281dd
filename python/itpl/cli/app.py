"""The ``itpl`` command line: parse, call the library, print. Heavy imports are lazy.

Subcommand families live beside this module: prune.py (prune, profile),
deploy.py (export, bench), train.py (finetune, eval); their shared argument
types are in args.py. This module holds ``info``, ``inspect``,
the parser and :func:`main`, which maps library errors onto flag names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from itpl.cli.args import (EXIT_ERROR, EXIT_OK, EXIT_USAGE, flag_message, model_arg, shape,
                           source)


def _cmd_info(args: argparse.Namespace) -> int:
    from itpl import __version__
    from itpl._memory import memory_policy
    from itpl.method import hsic

    facts = {
        "version": __version__,
        "openmp": hsic.has_openmp,
        "threads": hsic.default_threads(),
        "gram_kernel": hsic.gram_kernel(),
        "gram_kernels": hsic.gram_kernels(),  # what ITPL_GRAM_KERNEL may name here
        "freed_memory": memory_policy(),
    }
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for key, value in facts.items():
            print(f"{key:12s} {', '.join(value) if isinstance(value, list) else value}")
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    from itpl.model.cost import build_cost, format_amount
    from itpl.model.graph import analyze
    from itpl.pipeline import load_model

    if args.plan:
        from itpl.model.plan import build_pruned, read_plan

        plan = read_plan(args.plan)
        model, shape = build_pruned(plan), tuple(plan.input_shape)
        name = f"{plan.model} (pruned, {args.plan})"
    elif args.model:
        model, shape = load_model(source(args), args.weights, args.input_shape)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itpl", description="On-device, latency-aware CNN pruning (ITPruner)."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="build facts: OpenMP, threads, Gram kernel")
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    info.set_defaults(func=_cmd_info)

    from itpl.cli import deploy as cli_deploy, prune as cli_prune, train as cli_train

    cli_prune.add_parsers(sub)
    inspect = sub.add_parser("inspect", help="groups, widths, FLOPs and params of a model or plan")
    inspect.add_argument("plan", nargs="?", help="a *.plan.json file (instead of --model)")
    inspect.add_argument("--model", help="built-in name or package.module:factory")
    inspect.add_argument("--model-arg", action="append", type=model_arg, default=[],
                         metavar="KEY=VALUE", help="model constructor keyword argument")
    inspect.add_argument("--weights", help="state_dict file to load into the model")
    inspect.add_argument("--input-shape", type=shape, metavar="C,H,W", help="one sample's shape")
    inspect.add_argument("--json", action="store_true", help="print as JSON")
    inspect.set_defaults(func=_cmd_inspect)

    cli_deploy.add_parsers(sub)
    cli_train.add_parsers(sub)
    for command in sub.choices.values():  # which names in library messages are flags here
        command.set_defaults(flags=frozenset(o for a in command._actions for o in a.option_strings))
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
    from itpl.util import interrupt

    interrupt.install()
    try:
        with _console(args.flags):
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
        print(f"itpl: error: {flag_message(_one_line(exc), args.flags)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:
        if not interrupt.requested():
            raise  # a bug: its traceback is the useful report
        print("itpl: interrupted", file=sys.stderr)  # NumPy turns a Ctrl-C during its
        return 130  # import into an ImportError
    finally:
        interrupt.finish()


@contextlib.contextmanager
def _console(flags):
    """Library warnings (:class:`itpl.config.ItplWarning`) as ``itpl: warning:`` lines
    naming flags, and the ``itpl`` logger's progress messages as ``itpl:`` lines."""
    import logging
    import warnings

    from itpl.config import ItplWarning

    log = logging.getLogger("itpl")
    handler, level = logging.StreamHandler(sys.stderr), log.level
    handler.setFormatter(logging.Formatter("itpl: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ItplWarning):
            print(f"itpl: warning: {flag_message(str(message), flags)}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", ItplWarning)  # each run says it again
            warnings.showwarning = show
            yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, FileNotFoundError):
        where = f" '{exc.filename}'" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_outputs(args) -> None:
    """Refuse an unwritable output before any work (a profile takes minutes)."""
    from itpl.cli.deploy import export_paths
    from itpl.util.fileio import check_output, check_prefix

    output = getattr(args, "output", None)
    if args.command in ("prune", "finetune") and output:
        check_prefix(output)
    elif args.command == "profile" and output:
        check_output(output, "-o")
    elif args.command == "export":
        check_prefix(output)  # "-o DIR/" would write DIR/-b1.tflite with several batches
        for path in export_paths(output, args.batch).values():
            check_output(path, "-o")
    if getattr(args, "json", None) and isinstance(args.json, str):  # bench --json FILE
        check_output(args.json, "--json")
    if getattr(args, "plot", None):
        check_output(os.path.join(args.plot, "nhsic.png"), "--plot")


if __name__ == "__main__":
    sys.exit(main())
