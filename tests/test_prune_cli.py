"""``itpl prune`` / ``itpl inspect`` end to end, plans rebuilt by ``itpl.load``,
and the clear one-line errors of bad input (no partial output files)."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import itpl
from itpl.cli import main
from itpl.model import zoo as models
from itpl.model.plan import read_plan
from tests.macs import count


@pytest.fixture
def calib(tmp_path):
    path = tmp_path / "calib.npy"
    np.save(path, np.random.default_rng(0).standard_normal((40, 3, 32, 32)).astype(np.float32))
    return str(path)


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prune_resnet20_to_half_the_flops(tmp_path, calib, capsys):
    weights = tmp_path / "trained.pt"
    torch.manual_seed(0)
    torch.save(models.build("resnet20").state_dict(), weights)
    prefix = str(tmp_path / "out" / "r20")
    code, out, err = _run(capsys, "prune", "--model", "resnet20", "--weights", str(weights),
                          "--flops-ratio", "0.5", "--data", calib, "--samples", "32",
                          "-o", prefix, "--plot", str(tmp_path / "plots"), "-q")
    assert code == 0, err
    assert "warning" not in err
    plan = read_plan(prefix + ".plan.json")
    assert plan.budget["predicted"] <= plan.budget["value"] == pytest.approx(0.5 * plan.budget["full"])
    assert plan.settings["samples"] == 32 and plan.settings["estimator"] == "biased"
    assert plan.settings["objective"] == "log" and plan.settings["rounding"] == "greedy"
    check = plan.settings["beta_check"]  # beta chosen by how close the outputs stay
    assert check["scales"] == [1.0, 0.5, 2.0] and len(check["kl"]) == 3
    best = check["scales"][int(np.argmin(check["kl"]))]
    assert check["chosen_scale"] == best
    assert plan.settings["beta"] == pytest.approx(check["betas"][check["scales"].index(best)])
    assert plan.widths == check["widths"][check["scales"].index(best)]
    assert all(g.kept % 8 == 0 or g.kept == g.full for g in plan.groups)
    assert "importance moved" in out and "wrote" in out
    assert f"(x{best:g} the default): its widths kept the outputs closest" in out
    model = itpl.load(prefix + ".plan.json")
    macs, _ = count(model, (3, 32, 32))
    assert macs == plan.budget["predicted"]  # the plan's cost is the model's
    # the loaded model is the pruned one: same weights as the file, same function
    state = torch.load(prefix + ".pt", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    for name in ("nhsic.png", "widths.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # inspect reads the plan back
    code, out, _ = _run(capsys, "inspect", prefix + ".plan.json", "--json")
    facts = json.loads(out)
    assert facts["flops"] == plan.budget["predicted"]
    assert [g["width"] for g in facts["groups"]] == plan.widths


def test_pruned_model_keeps_the_planned_channels(tmp_path, calib, capsys):
    prefix = str(tmp_path / "v")
    code, _, err = _run(capsys, "prune", "--model", "vgg16", "--params", "5M", "--data", calib,
                        "--samples", "16", "-o", prefix, "-q", "--criterion", "fpgm", "--debiased",
                        "--objective", "linear")
    assert code == 0, err
    plan = read_plan(prefix + ".plan.json")
    assert plan.settings["objective"] == "linear"
    model = itpl.load(prefix + ".plan.json")
    _, params = count(model, (3, 32, 32))
    assert params == plan.budget["predicted"] <= 5e6
    for g in plan.groups:  # parameter tensors have exactly the planned widths
        assert model.get_submodule(g.root).out_channels == g.kept
        assert g.channels == sorted(set(g.channels)) and len(g.channels) == g.kept


def test_beta_check_off_exact_rounding_and_bad_scales(tmp_path, calib, capsys):
    prefix = str(tmp_path / "r")
    base = ["prune", "--model", "resnet20", "--flops-ratio", "0.4", "--data", calib,
            "--samples", "16", "-o", prefix, "-q"]
    code, _, err = _run(capsys, *base, "--beta-scales", "1", "--rounding", "exact")
    assert code == 0, err
    plan = read_plan(prefix + ".plan.json")
    assert plan.settings["beta_check"] is None and plan.settings["rounding"] == "exact"
    code, _, err = _run(capsys, *base, "--beta", "0.5")  # a fixed beta is not checked
    assert code == 0, err
    assert read_plan(prefix + ".plan.json").settings["beta_check"] is None
    code, _, err = _run(capsys, *base, "--beta-scales", "1,0")
    assert code == 2 and "0 must be a positive number" in err


def test_user_factory_model_and_image_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))  # tests.small_models imports
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(images / f"{i}.png")
    prefix = str(tmp_path / "c")
    code, out, err = _run(capsys, "prune", "--model", "tests.small_models:concat_net",
                          "--model-arg", "num_classes=7", "--flops-ratio", "0.6",
                          "--data", str(images), "--preset", "cifar", "--round-to", "4",
                          "-o", prefix, "-q")
    assert code == 0, err
    assert "fewer than --samples" in err
    model = itpl.load(prefix + ".plan.json")
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    assert read_plan(prefix + ".plan.json").model_kwargs == {"num_classes": 7}
    # a model that does not say its input shape needs --input-shape
    code, _, err = _run(capsys, "inspect", "--model", "tests.small_models:no_shape_net")
    assert code == 1 and "--input-shape" in err
    code, out, _ = _run(capsys, "inspect", "--model", "tests.small_models:no_shape_net",
                        "--input-shape", "3,12,12")
    assert code == 0 and "prunable groups" in out


def test_random_data_warns(tmp_path, capsys):
    code, _, err = _run(capsys, "prune", "--model", "resnet20", "--flops", "30M", "--samples", "8",
                        "-o", str(tmp_path / "r"), "-q")
    assert code == 0
    assert "random inputs carries no information" in err


def test_budget_at_or_above_unpruned_prunes_nothing(tmp_path, capsys):
    code, out, _ = _run(capsys, "prune", "--model", "resnet20", "--flops", "41M",
                        "-o", str(tmp_path / "r"), "-q")
    assert code == 0 and "no pruning" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--flops", "1k"], "smallest achievable flops"),
    (["--flops", "lots"], "cannot read 'lots'"),
    (["--flops-ratio", "0.5", "--data", "/nonexistent/dir"], "does not exist"),
    (["--flops-ratio", "0.5", "--weights", "/nonexistent.pt"], "does not exist"),
    (["--model", "resnet21", "--flops-ratio", "0.5"], "unknown model 'resnet21'"),
    (["--model", "tests.small_models:not_a_module", "--flops-ratio", "0.5"], "not a torch.nn.Module"),
    (["--model", "nosuchpkg.mod:f", "--flops-ratio", "0.5"], "cannot import 'nosuchpkg.mod'"),
    (["--flops-ratio", "0.5", "--input-shape", "1,32,32"], "does not run on input shape"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    if "--model" not in argv:
        argv = ["--model", "resnet20"] + argv
    out_dir = tmp_path / "out"
    code, _, err = _run(capsys, "prune", *argv, "--samples", "8", "-o", str(out_dir / "x"), "-q")
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("itpl: error")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_weights_that_do_not_fit(tmp_path, capsys):
    bad = tmp_path / "w.pt"
    torch.save(models.build("resnet56").state_dict(), bad)
    code, _, err = _run(capsys, "inspect", "--model", "resnet20", "--weights", str(bad))
    assert code == 1 and "do not fit the model (missing" in err and "unexpected" in err
    (tmp_path / "junk.pt").write_bytes(b"junk")
    code, _, err = _run(capsys, "inspect", "--model", "resnet20", "--weights", str(tmp_path / "junk.pt"))
    assert code == 1 and "cannot read weights" in err


def test_bad_plans(tmp_path, capsys):
    (tmp_path / "p.json").write_text("{")
    code, _, err = _run(capsys, "inspect", str(tmp_path / "p.json"))
    assert code == 1 and "not valid JSON" in err
    (tmp_path / "q.json").write_text(json.dumps({"format": "other"}))
    code, _, err = _run(capsys, "inspect", str(tmp_path / "q.json"))
    assert code == 1 and "not an itpl plan" in err


@pytest.mark.slow
def test_mobilenet_v1_to_283m_flops(tmp_path, capsys):
    """The paper's MobileNetV1 283M configuration, at full input size."""
    prefix = str(tmp_path / "m")
    code, out, err = _run(capsys, "prune", "--model", "mobilenet_v1", "--flops", "283M",
                          "--samples", "16", "-o", prefix, "-q")
    assert code == 0, err
    plan = read_plan(prefix + ".plan.json")
    assert 0.97 * 283e6 < plan.budget["predicted"] <= 283e6
    macs, _ = count(itpl.load(prefix + ".plan.json"), (3, 224, 224))
    assert macs == plan.budget["predicted"]
