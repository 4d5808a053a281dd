"""The public Python API: the README's example run as written, on an ``nn.Module``
built here, and the contracts of :func:`itpl.prune`, the budgets and the config."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import itpl
from itpl.budget import Budget
from tests.small_models import ResidualNet

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ResidualNet()


@pytest.fixture
def images():
    return torch.randn(24, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_readme_example_runs_as_written(model, images, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 7
    namespace = {"model": model, "images": images}
    exec(compile(code, str(README), "exec"), namespace)  # the README's lines, nothing else

    result, tflite = namespace["result"], namespace["tflite"]
    assert result.pruned and result.plan.budget["predicted"] <= result.plan.budget["value"]
    for key, value in model.state_dict().items():  # the caller's model is not pruned
        torch.testing.assert_close(value, before[key])
    assert (tmp_path / "net-pruned.pt").exists() and (tmp_path / "net-pruned.tflite").exists()
    assert (tmp_path / "net-pruned.tflite").read_bytes() == tflite.content
    assert tflite.max_abs_diff <= tflite.tolerance and tflite.batch == 1
    table = capsys.readouterr().out
    assert "unpruned" in table and "pruned" in table and "x [" in table  # speedup with interval
    # the plan names the model's class, so the pruned model comes back from files alone
    loaded = itpl.load(tmp_path / "net-pruned.plan.json")
    x = images[:4]
    torch.testing.assert_close(loaded(x), result.model(x))


def test_budgets_are_checked_when_made():
    assert itpl.Flops("283M").value == 283e6 == itpl.Flops(283e6).value
    assert itpl.Flops(ratio=0.5).resolve(100.0) == 50.0
    assert itpl.Latency(ms=15).ms == 15 and itpl.Latency(ratio=0.54).set_as == "ratio"
    assert itpl.Params(2e6).set_as == "params" and itpl.Latency(ms=3).set_as == "ms"
    for bad in (lambda: itpl.Flops(), lambda: itpl.Flops(1e6, ratio=0.5),
                lambda: itpl.Params(ratio=-1), lambda: itpl.Latency(ratio=float("nan")),
                lambda: itpl.Flops(0), lambda: itpl.Flops("lots")):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(TypeError):
        Budget(1.0)  # the kind is the class


def test_config_is_checked_when_made():
    assert itpl.PruneConfig().widths == itpl.AllowedWidths(alpha_min=0.1, round_to=None)
    with pytest.raises(ValueError, match="`objective`"):
        itpl.PruneConfig(objective="quadratic")
    with pytest.raises(ValueError, match="`alpha_min`"):
        itpl.AllowedWidths(alpha_min=0)
    with pytest.raises(ValueError, match="`round_to`"):
        itpl.AllowedWidths(round_to=0)
    with pytest.raises(TypeError):
        itpl.PruneConfig(256)  # keyword-only
    assert itpl.AllowedWidths(0.5, 8).options(100) == [56, 64, 72, 80, 88, 96, 100]


def test_prune_in_memory_with_config(model, images):
    config = itpl.PruneConfig(samples=16, beta_scales=(1.0,), objective="linear",
                              widths=itpl.AllowedWidths(alpha_min=0.25, round_to=4))
    result = itpl.prune(model, itpl.Params(ratio=0.6), data=images.numpy(), config=config)
    plan = result.plan
    assert plan.model == "tests.small_models:ResidualNet" and plan.input_shape == [3, 16, 16]
    assert plan.settings["samples"] == 16 and plan.settings["data"] == "tensor"
    assert plan.settings["round_to"] == 4 and plan.settings["objective"] == "linear"
    assert all(g.kept % 4 == 0 or g.kept == g.full for g in plan.groups)
    assert plan.budget["predicted"] <= plan.budget["value"]


def test_prune_refusals_name_the_arguments(model, images):
    with pytest.raises(ValueError, match=r"has shape \(24, 3, 16, 16\); expected \(N, 3, 8, 8\)"):
        itpl.prune(model, itpl.Flops(ratio=0.5), data=images, input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="`profile`"):
        itpl.prune(model, itpl.Latency(ratio=0.5), data=images)
    with pytest.raises(ValueError, match="infeasible.*`alpha_min`"):
        itpl.prune(model, itpl.Flops(ratio=0.001), data=images)
    with pytest.raises(TypeError, match="itpl.Flops"):
        itpl.prune(model, 0.5, data=images)
    with pytest.raises(ValueError, match="`input_shape`"):
        itpl.prune(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten()), itpl.Flops(ratio=0.5))


def test_random_data_warns_and_a_generous_budget_prunes_nothing(model, images):
    with pytest.warns(itpl.ItplWarning, match="random inputs"):
        itpl.prune(model, itpl.Flops(ratio=0.7), config=itpl.PruneConfig(samples=8,
                                                                           beta_scales=(1,)))
    result = itpl.prune(model, itpl.Flops(ratio=1.5), data=images)
    assert not result.pruned and result.model is not model
    with pytest.raises(ValueError, match="nothing was pruned"):
        result.save("x")


class _Wide(nn.Module):
    """Needs a constructor argument: a plan cannot rebuild it alone."""

    input_shape = (3, 8, 8)

    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(width, 2)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def test_load_with_the_unpruned_model(tmp_path):
    torch.manual_seed(0)
    model = _Wide(32)
    data = torch.randn(16, 3, 8, 8)
    result = itpl.prune(model, itpl.Flops(ratio=0.5), data=data,
                        config=itpl.PruneConfig(beta_scales=(1,)))
    _, plan = result.save(str(tmp_path / "w"))
    with pytest.raises(ValueError, match="factory failed"):
        itpl.load(plan)
    loaded = itpl.load(plan, model=model)
    torch.testing.assert_close(loaded(data), result.model(data))
    assert model.body[0].out_channels == 32  # the instance given was copied


def test_public_names_and_a_light_import():
    assert set(itpl.__all__) >= {"prune", "profile", "convert", "bench", "load", "Flops",
                                 "Params", "Latency", "PruneConfig", "PruneResult",
                                 "AllowedWidths", "TFLiteModel", "BenchResult"}
    assert all(getattr(itpl, name) is not None for name in itpl.__all__)
    code = ("import sys, itpl; itpl.Flops(ratio=0.5); itpl.PruneConfig(); "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'; "
            "from itpl.latency.profile import read_profile; from itpl.deploy.bench import format_table; "
            "import itpl.model.surgery, importlib.util; "
            "assert callable(itpl.profile) and callable(itpl.bench) and callable(itpl.prune), "
            "'a submodule hid a public function'; "
            "assert not [n for n in itpl.__all__ if n != '__version__' "
            "and importlib.util.find_spec('itpl.' + n)], 'a module named like a public name'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=README.parent)


def test_bench_result_reads_rows():
    rows = [{"model": "a", "batch": 1, "speedup": 1.0, "reference": "a"},
            {"model": "b", "batch": 1, "speedup": 2.0, "reference": "a"}]
    result = itpl.BenchResult({"results": rows})
    assert result.speedup("b") == 2.0 and result.row("a", 1)["speedup"] == 1.0
    with pytest.raises(KeyError):
        result.row("b", 4)
    assert np.isclose(result.speedup("b", batch=1), 2.0)


def _first_norm(net):
    return next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_pruning_with_data_measures_the_pruned_models_batch_norm(model, images):
    """With real images, the pruned model's batch norms hold its own statistics on
    them (the survivors' old ones were measured with the removed channels feeding
    them); without, the kept channels' statistics stay as they were."""
    for m in model.modules():  # statistics unlike the images' (a trained model's)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(0.25)
            m.running_var.fill_(2.0)
    model.eval()
    config = itpl.PruneConfig(samples=24, beta_scales=(1,))
    data = images * 2 + 1
    got = itpl.prune(model, itpl.Flops(ratio=0.5), data=data, config=config)
    assert got.plan.settings["bn_reestimated"] == 24
    norm = _first_norm(got.model)
    seen = []
    hook = norm.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        got.model.eval()(data)
    hook.remove()
    x = seen[0]
    assert torch.allclose(norm.running_mean, x.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(norm.running_var, x.var((0, 2, 3), unbiased=True), rtol=1e-3)

    with pytest.warns(itpl.ItplWarning):
        blind = itpl.prune(model, itpl.Flops(ratio=0.5), config=config)
    assert blind.plan.settings["bn_reestimated"] is None
    assert torch.all(_first_norm(blind.model).running_mean == 0.25)
