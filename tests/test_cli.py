import json
import subprocess
import sys

from itpl import hsic
from itpl.cli import main


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["openmp"] is hsic.has_openmp
    assert facts["gram_kernel"] in ("avx512", "avx2", "neon", "generic")
    assert facts["threads"] >= 1


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "itpl", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip()
