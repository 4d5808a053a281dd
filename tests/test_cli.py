import json
import subprocess
import sys

from itpl.cli import main
from itpl.method import hsic


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["openmp"] is hsic.has_openmp
    assert facts["gram_kernel"] == hsic.gram_kernel() and facts["gram_kernel"] in hsic.gram_kernels()
    assert facts["gram_kernels"] == hsic.gram_kernels() and facts["gram_kernels"][0] == "generic"
    assert facts["threads"] >= 1


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "itpl", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip()


def test_library_messages_name_flags():
    from itpl.cli.args import flag_message

    flags = {"--alpha-min", "--latency-ms", "--data"}
    assert (flag_message("lower `alpha_min`; `ms` too small; no `data`; `objective` x", flags)
            == "lower --alpha-min; --latency-ms too small; no --data; `objective` x")


def test_a_library_refusal_names_the_flag(capsys):
    code = main(["prune", "--model", "resnet20", "--flops-ratio", "0.5", "--alpha-min", "0"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("itpl: error: --alpha-min must be in (0, 1]"), err
