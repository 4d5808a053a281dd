"""Atomic output files: write to a temporary name beside the target, rename on success.

A failed or interrupted run leaves no partial output: :class:`staged_outputs`
renames all of its files only when the whole block succeeds, after checking
that every target can be replaced, and removes its temporary files whatever
goes wrong. :func:`check_output` lets a command refuse a bad output path before
it starts work that may take minutes.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager

from itpl.util import interrupt


def check_output(path: str, what: str = "output") -> str:
    """Refuse an output file path that cannot be written, before any work.

    The path must not be a folder or end in a separator, and its nearest
    existing ancestor must be a writable folder (missing folders are made
    when the file is written). Returns ``path``.
    """
    if not path or path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise ValueError(f"{what} '{path}' names a folder; give a file name in it")
    if os.path.isdir(path):
        raise ValueError(f"{what} '{path}' is an existing folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"{what} '{path}': '{folder}' is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{what} '{path}': cannot write in '{folder}'")
    return path


def check_prefix(prefix: str, what: str = "-o") -> str:
    """Refuse an output prefix (``PREFIX.plan.json``, ``PREFIX.pt``) that ends in a
    folder separator: it would write hidden files such as ``DIR/.pt``. (A folder
    named like the prefix is fine: ``out`` writes ``out.pt`` beside ``out/``.)"""
    if not os.path.basename(prefix) or os.path.basename(prefix) in (".", ".."):
        raise ValueError(f"{what} '{prefix}' is a folder; give a prefix such as "
                         f"'{os.path.join(prefix, 'model')}'")
    return check_output(prefix + ".x", what) and prefix


class _Stage:
    def __init__(self):
        self.pending: list[tuple[str, str]] = []

    def path(self, final: str) -> str:
        """A temporary path in ``final``'s folder; renamed to ``final`` on success."""
        check_output(final)
        folder = os.path.dirname(os.path.abspath(final))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.", suffix=".tmp", dir=folder)
        os.close(fd)
        self.pending.append((tmp, final))
        return tmp

    def discard(self) -> None:
        for tmp, _ in self.pending:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


@contextmanager
def staged_outputs():
    """Context whose ``stage.path(final)`` files all appear at once, or not at all.

    Every target is checked before the first rename, so a target that became a
    folder (or unwritable) meanwhile fails the whole set; the temp files are
    removed on any failure, including one of the renames.
    """
    stage = _Stage()
    try:
        yield stage
        interrupt.check()  # a Ctrl-C swallowed on the way must not end in written files
        for _, final in stage.pending:
            check_output(final)
        umask = os.umask(0)
        os.umask(umask)
        for tmp, final in stage.pending:
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs are ordinary files
        for tmp, final in stage.pending:
            os.replace(tmp, final)
    except BaseException:
        stage.discard()
        raise


def finite_json(data):
    """``data`` with every non-finite float replaced by None: JSON has no NaN."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def dump_json(data, f, indent: int = 1) -> None:
    """Strict JSON (``NaN`` refused, so a bug cannot write an unreadable file)."""
    json.dump(finite_json(data), f, indent=indent, allow_nan=False)
    f.write("\n")


def write_json(path: str, data, indent: int = 1) -> None:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`staged_outputs`);
    non-finite floats are written as null."""
    with staged_outputs() as stage, open(stage.path(path), "w") as f:
        dump_json(data, f, indent)


def read_json(path: str, what: str):
    """Parse a JSON file; ``what`` names it in the one-line errors."""
    if os.path.isdir(path):
        raise ValueError(f"{what} '{path}' is a folder, not a file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} '{path}' does not exist")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} '{path}' is not valid JSON: {exc}") from None
