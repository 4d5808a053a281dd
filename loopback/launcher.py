"""The stand-in benchmark_model as a native executable, as the real tool is.

``stand_in()`` compiles loopback/launcher.c (a C compiler is there wherever
itpl's C++ core was built) into a folder under the temporary directory, once
per source, tool and Python, and returns its path; ``benchmark_binary=`` then
pushes it to the loopback phone. Each run hands its arguments to the Python
stand-in's zygote (loopback/benchmark_model.py) and prints what the tool
prints, so a burst costs the phone a native start instead of a Python one.
Without a compiler it returns the Python stand-in itself.

Per-process cost of one call with a 1x1-conv micro-model and no timed runs,
on this 2-core machine (load 2-3): the Python stand-in 32-38 ms (50-60 ms
before its client imported only built-in modules), this launcher about 8 ms
(process start, the zygote's fork, LiteRT set-up). A real benchmark_model on
a phone pays its exec and dynamic linking, flag parsing and the interpreter's
and XNNPACK's set-up: an estimated 5-20 ms for such a model (not measured
here: no phone), so the launcher is about as cheap as a phone, not cheaper by
an order of magnitude.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

from loopback.benchmark_model import socket_path

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "benchmark_model.py")
SOURCE = os.path.join(HERE, "launcher.c")


def stand_in() -> str:
    """Path of the native launcher (built on first use), or of the Python
    stand-in where no C compiler is found."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return TOOL
    python = sys.executable
    with open(SOURCE, "rb") as f, open(TOOL, "rb") as g:
        key = hashlib.sha1(f.read() + g.read() + python.encode()).hexdigest()[:12]
    folder = os.path.join(tempfile.gettempdir(), f"itpl-launcher-{os.getuid()}-{key}")
    binary = os.path.join(folder, "benchmark_model")
    if os.path.exists(binary):
        return binary
    os.makedirs(folder, exist_ok=True)
    partial = f"{binary}.{os.getpid()}"
    defines = {"TOOL": TOOL, "PYTHON": python, "SOCKET": socket_path(python)}
    command = [compiler, "-O2", "-o", partial, SOURCE,
               *(f'-D{k}="{v}"' for k, v in defines.items())]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cannot build the stand-in launcher: {done.stderr.strip()}")
    os.replace(partial, binary)  # complete or absent, for a concurrent test run
    return binary
