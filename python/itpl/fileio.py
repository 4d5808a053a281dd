"""Atomic output files: write to a temporary name beside the target, rename on success.

A failed or interrupted run leaves no partial output: :class:`staged_outputs`
renames all of its files only when the whole block succeeds.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager


class _Stage:
    def __init__(self):
        self.pending: list[tuple[str, str]] = []

    def path(self, final: str) -> str:
        """A temporary path in ``final``'s folder; renamed to ``final`` on success."""
        folder = os.path.dirname(os.path.abspath(final))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.", suffix=".tmp", dir=folder)
        os.close(fd)
        self.pending.append((tmp, final))
        return tmp


@contextmanager
def staged_outputs():
    """Context whose ``stage.path(final)`` files all appear at once, or not at all."""
    stage = _Stage()
    try:
        yield stage
    except BaseException:
        for tmp, _ in stage.pending:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    umask = os.umask(0)
    os.umask(umask)
    for tmp, final in stage.pending:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp, final)


def write_json(path: str, data, indent: int = 1) -> None:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`staged_outputs`)."""
    with staged_outputs() as stage, open(stage.path(path), "w") as f:
        json.dump(data, f, indent=indent)
        f.write("\n")


def read_json(path: str, what: str):
    """Parse a JSON file; ``what`` names it in the one-line errors."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} '{path}' does not exist")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} '{path}' is not valid JSON: {exc}") from None
