"""The ARM64 NEON Gram kernel, cross-compiled and run under qemu-user.

This host cannot run NEON code, so the kernels are built for ARM64 with
Debian's cross compiler (``g++-aarch64-linux-gnu``) together with a small C++
check (tests/cpp/gram_kernels_check.cpp: every kernel of the build against a
naive float64 reference over shapes, dtypes, thread counts and block sizes)
and run under ``qemu-aarch64``. ``make test`` installs both. Correctness
only: nothing is timed under emulation.
"""

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CXX = "aarch64-linux-gnu-g++"
QEMU = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        platform.machine() not in ("aarch64", "arm64")
        and (shutil.which(CXX) is None or QEMU is None),
        reason="needs Debian's g++-aarch64-linux-gnu and qemu-user (make test installs them)",
    ),
]


@pytest.fixture(scope="module")
def arm64_check(tmp_path_factory):
    native = platform.machine() in ("aarch64", "arm64")
    exe = tmp_path_factory.mktemp("arm64") / "gram_kernels_check"
    sources = sorted(str(p) for p in (ROOT / "cpp" / "src").glob("gram*.cpp"))
    cmd = [("g++" if native else CXX), "-std=c++17", "-O2", "-fopenmp", "-Wall", "-Wextra",
           "-I", str(ROOT / "cpp" / "include"), *sources,
           str(ROOT / "tests" / "cpp" / "gram_kernels_check.cpp"), "-o", str(exe)]
    if not native:
        cmd.insert(1, "-static")  # qemu-user then needs no ARM64 sysroot
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return [str(exe)] if native else [QEMU, str(exe)]


def test_neon_kernel_matches_the_reference_under_qemu(arm64_check):
    run = subprocess.run(arm64_check, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    kernels = run.stdout.splitlines()[0].split()[1:]
    assert kernels == ["generic", "neon"]
    assert "auto: neon" in run.stdout
