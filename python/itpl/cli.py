"""The ``itpl`` command line: parse, call the library, print. Heavy imports are lazy."""

from __future__ import annotations

import argparse
import json
import sys

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_ERROR = 1


def _cmd_info(args: argparse.Namespace) -> int:
    from itpl import __version__, hsic

    facts = {
        "version": __version__,
        "openmp": hsic.has_openmp,
        "threads": hsic.default_threads(),
        "gram_kernel": hsic.gram_kernel(),
    }
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for key, value in facts.items():
            print(f"{key:12s} {value}")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from itpl import __version__

        print(__version__)
        return EXIT_OK
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"itpl: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("itpl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
