"""The patterns of torchvision's CNN classifiers, in small models: a ReLU module
reused inside residual blocks, channel shuffle through view/transpose, a
1x1-conv classifier with global pooling, dense concatenation, squeeze-and-excite
with hardswish, a conv with parameters used twice. Each prunes to a FLOPs
budget (checked by an independent MAC count), keeps its output shape, and
exports with a numeric check relative to the output's own scale."""

import pytest
import torch

import itpl
from itpl.model.graph import analyze
from itpl.model.source import ModelSource
from itpl.pipeline import prune_model
from tests import small_models
from tests.macs import count

PATTERNS = ["reused_relu_net", "shuffle_net", "conv_classifier_net", "dense_net",
            "squeeze_excite_net", "SharedConvNet"]


def _prune(name, ratio=0.5, **options):
    source = ModelSource(f"tests.small_models:{name}", {})
    config = itpl.PruneConfig(samples=16, widths=itpl.AllowedWidths(round_to=2), **options)
    return source, prune_model(source, itpl.Flops(ratio=ratio), config=config)


@pytest.mark.parametrize("name", PATTERNS)
def test_pattern_prunes_to_the_budget_and_keeps_its_output(name):
    source, result = _prune(name)
    unpruned = source.build()
    shape = unpruned.input_shape
    full = count(unpruned, shape)[0]
    kept = count(result.model, shape)[0]
    # itpl's own prediction must equal the independent count, and meet the budget
    assert kept == pytest.approx(result.plan.budget["predicted"], rel=1e-9)
    assert 0.40 <= kept / full <= 0.5
    x = torch.randn(3, *shape)
    with torch.no_grad():
        assert result.model.eval()(x).shape == unpruned.eval()(x).shape


def test_reused_relu_is_not_a_capture_point():
    """The ReLU module called twice per block would hand the importance hook the
    block output as the first conv's activation: the capture stops before it."""
    graph = analyze(small_models.reused_relu_net(), (3, 16, 16))
    captures = dict(pair for g in graph.groups for pair in zip(g.members, g.capture))
    assert captures["blocks.0.conv1"] == "blocks.0.bn1"
    assert all(not c.endswith(".relu") or c == "relu" for c in captures.values())


def test_shuffled_channels_stay_whole():
    """Only the branch-internal widths are prunable; a group crossing the
    shuffle would pair the wrong channels (torch-pruning takes transpose for an
    element-wise op)."""
    graph = analyze(small_models.shuffle_net(), (3, 32, 32))
    roots = [g.root for g in graph.groups]
    assert not any("branch1" in r or r.endswith("branch2.5") for r in roots)
    assert "stage2.1.branch2.0" in roots and "conv5.0" in roots


def test_conv_classifier_output_width_is_never_pruned():
    """SqueezeNet's classifier is a 1x1 conv with num_classes outputs followed by
    pooling: no group may hold its output channels, even without the output check."""
    graph = analyze(small_models.conv_classifier_net(), (3, 32, 32))
    assert all("classifier" not in m for g in graph.groups for m in g.members)
    _, result = _prune("conv_classifier_net", ratio=0.4, beta_scales=(1.0,))
    assert result.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", PATTERNS)
def test_pattern_exports_with_a_relative_check(name, tmp_path):
    from itpl.deploy.export import export_tflite

    _, result = _prune(name)
    shape = getattr(small_models, name)().input_shape
    r = export_tflite(result.model, shape, str(tmp_path / "m.tflite"), batch=2)
    assert r.max_abs_diff <= r.tolerance and r.relative_diff <= 1e-3


@pytest.mark.slow
def test_export_check_is_relative_to_tiny_outputs(tmp_path, monkeypatch):
    """Outputs of ~1e-12 (random init, scaled weights) wrong by 1% of their scale
    are refused: an absolute tolerance of 1e-3 would pass them."""
    from itpl.deploy import export

    model = small_models.ResidualNet().eval()
    with torch.no_grad():
        model.head.weight.mul_(1e-12)
        model.head.bias.zero_()
    real = export.run_tflite
    monkeypatch.setattr(export, "run_tflite", lambda path, x: real(path, x) * 1.01)
    with pytest.raises(ValueError, match="differs from PyTorch"):
        export.export_tflite(model, (3, 16, 16), str(tmp_path / "m.tflite"))
    assert list(tmp_path.iterdir()) == []
