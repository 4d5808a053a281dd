"""Argument types and helpers shared by the ``itpl`` subcommands (cli_*.py), and
the mapping of library messages onto flag names. Imports nothing heavy."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_ERROR = 1

# Library messages name their arguments in backquotes (`alpha_min`); the CLI names its
# flags instead. Where a flag is not the argument's name with dashes, it is listed here.
FLAG_OF = {"ms": "--latency-ms"}
_NAMED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def flag_message(text: str, flags) -> str:
    """``text`` with each `name` replaced by its flag where ``flags`` holds one."""
    def flag(match):
        name = match.group(1)
        option = FLAG_OF.get(name) or "--" + name.replace("_", "-")
        return option if option in flags else match.group(0)

    return _NAMED.sub(flag, text)


def shape(text: str) -> tuple[int, ...]:
    """``3,224,224`` (or ``3x224x224``) -> a tuple of positive ints."""
    try:
        value = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 3,224,224") from None
    if not value or any(v < 1 for v in value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 3,224,224")
    return value


def number(kind, low: float, words: str, *, above: bool = False):
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


positive = number(int, 1, "at least 1")
nonnegative = number(int, 0, "0 or more")
positive_float = number(float, 0, "a positive number", above=True)
nonnegative_float = number(float, 0, "a finite number, 0 or more")


def scales(text: str) -> tuple[float, ...]:
    """``1,0.5,2`` -> (1.0, 0.5, 2.0), each a positive number."""
    return tuple(positive_float(item) for item in text.split(","))


def model_arg(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses, else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="built-in name (mobilenet_v1, mobilenet_v2, resnet50, resnet20, resnet56, "
                        "vgg16) or package.module:factory returning an nn.Module")
    p.add_argument("--model-arg", action="append", type=model_arg, default=[], metavar="KEY=VALUE",
                   help="keyword argument of the model constructor, e.g. num_classes=100 (repeatable)")
    p.add_argument("--weights", help="state_dict file to load into the model")
    p.add_argument("--input-shape", type=shape, metavar="C,H,W",
                   help="one sample's shape, where the model does not say (e.g. 3,224,224)")


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark-binary", metavar="FILE",
                        help="phones: push this benchmark_model build (default: the one in "
                             "/data/local/tmp on the phone)")
    parser.add_argument("--cpu-mask", metavar="HEX",
                        help="phones: pin benchmark_model to these cores with taskset, e.g. f0")


DEVICE_HELP = ("where to time: local (default); a phone: adb (the adb server's only phone), "
               "adb:SERIAL (one of the server's), adb:HOST:PORT or adb-usb[:SERIAL] "
               "(directly, no server)")


def progress(args) -> bool:
    """Progress bars on a terminal only: redraws would litter logs and pipes."""
    return not args.quiet and sys.stderr.isatty()


def source(args):
    from itpl.model.source import ModelSource

    return ModelSource(args.model, dict(args.model_arg))


def device(args, spec: str, cpu_mask: str | None = None):
    from itpl.deploy.devices import get_device

    return get_device(spec, benchmark_binary=args.benchmark_binary,
                      cpu_mask=args.cpu_mask or cpu_mask)


def default_prefix(model: str) -> str:
    """An output name from a model spec: ``pkg.mod:f`` -> ``pkg_mod_f``."""
    return model.replace(":", "_").replace(".", "_")
