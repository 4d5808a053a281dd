"""Keep freed memory in the process instead of returning it to the OS (glibc only).

PyTorch's CPU allocator does not cache: every activation and gradient of a
training step or a calibration forward pass is a fresh ``malloc``. glibc serves
blocks above its mmap threshold (128 KiB, rising only as far as 32 MiB) with
``mmap`` and gives them back with ``munmap`` on ``free``, so each step faults the
same pages in again. On a virtual machine a page fault is expensive: a ResNet-20
training step at batch 128 took 3.47 s this way and 0.57 s with the memory kept
(bench/bench_memory.py measures it).

:func:`keep_freed_memory` turns mmap off for the heap (``M_MMAP_MAX = 0``) and
never trims its top (``M_TRIM_THRESHOLD`` at its maximum), the effect of
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set before start-up, but
from inside the process. Memory freed by PyTorch is then reused by the next
allocation; the process's resident size stays at its peak. ``import itpl`` calls
it once; ``ITPL_KEEP_MEMORY=0`` in the environment leaves malloc as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

ENV = "ITPL_KEEP_MEMORY"
_state: dict[str, object] = {"applied": None}


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; see the module docstring.

    Returns
    -------
    bool
        True when the setting is in force (now or from an earlier call); False
        where malloc is not glibc's or ``ITPL_KEEP_MEMORY=0`` turns it off.
    """
    if _state["applied"] is not None:
        return bool(_state["applied"])
    applied = False
    if os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off") \
            and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
        except (OSError, AttributeError):
            applied = False
    _state["applied"] = applied
    return applied


def memory_policy() -> str:
    """One word for ``itpl info``: whether freed memory is kept."""
    applied = _state["applied"]
    if applied is None:
        return "default"
    return "kept (glibc mallopt)" if applied else "default"
