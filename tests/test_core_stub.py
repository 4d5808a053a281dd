"""python/itpl/_core.pyi describes the compiled module exactly."""

import ast
import re
from pathlib import Path

import pytest

from itpl import _core

STUB = Path(__file__).resolve().parents[1] / "python" / "itpl" / "_core.pyi"


def stub_tree():
    return ast.parse(STUB.read_text())


def stub_functions():
    return {n.name: n for n in stub_tree().body if isinstance(n, ast.FunctionDef)}


def stub_attributes():
    return {n.target.id for n in stub_tree().body if isinstance(n, ast.AnnAssign)}


def signature(args: ast.arguments):
    """(positional names, keyword-only names, defaults by name) of a def."""
    pos = [a.arg for a in args.args]
    kwonly = [a.arg for a in args.kwonlyargs]
    defaults = {}
    for a, d in zip(args.args[len(args.args) - len(args.defaults):], args.defaults):
        defaults[a.arg] = ast.literal_eval(d)
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        if d is not None:
            defaults[a.arg] = ast.literal_eval(d)
    return pos, kwonly, defaults


def runtime_signatures(name):
    """Signatures pybind11 writes into the docstring (one per overload)."""
    doc = getattr(_core, name).__doc__
    lines = re.findall(rf"^(?:\d+\. )?{name}\((.*)\) -> .*$", doc, flags=re.M)
    lines = [line for line in lines if line != "*args, **kwargs"]
    assert lines, f"no signature in the docstring of {name}"
    return [signature(ast.parse(f"def f({params}): pass").body[0].args) for params in lines]


def public_names():
    return {n for n in dir(_core) if not n.startswith("_")}


def test_stub_lists_every_public_name():
    in_stub = set(stub_functions()) | stub_attributes()
    assert in_stub == public_names()


@pytest.mark.parametrize("name", sorted(n for n in dir(_core) if callable(getattr(_core, n))
                                        and not n.startswith("_")))
def test_stub_signature_matches(name):
    stub = signature(stub_functions()[name].args)
    for runtime in runtime_signatures(name):
        assert runtime == stub, f"{name}: stub {stub} != runtime {runtime}"
