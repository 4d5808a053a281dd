"""Channel groups and the quadratic resource form, against an independent hook counter
on physically pruned models."""

import numpy as np
import pytest
import torch

from itpl.budget import parse_amount
from itpl.method.widths import allowed_widths
from itpl.model import zoo as models
from itpl.model.cost import build_cost, format_amount
from itpl.model.graph import analyze
from itpl.model.surgery import apply_pruning, select_channels
from tests.macs import count
from tests.small_models import ConcatNet, ResidualNet

SMALL = [ConcatNet, ResidualNet]


def _random_widths(graph, rng, round_to=8):
    return [int(rng.choice(allowed_widths(g.width, 0.05, round_to))) for g in graph.groups]


@pytest.mark.parametrize("name", sorted(models.BUILTIN))
def test_form_at_alpha_one_equals_the_counted_cost(name):
    spec = models.BUILTIN[name]
    model = models.build(name)
    graph = analyze(model, spec.input_shape)
    macs, params = count(model, spec.input_shape)
    assert build_cost(graph, "flops").full() == macs
    assert build_cost(graph, "params").full() == params


@pytest.mark.parametrize("name", sorted(models.BUILTIN))
def test_form_is_exact_on_the_pruned_model(name, rng):
    spec = models.BUILTIN[name]
    graph = analyze(models.build(name), spec.input_shape)
    flops, params = build_cost(graph, "flops"), build_cost(graph, "params")
    widths = _random_widths(graph, rng)
    alpha = np.array(widths) / np.array(graph.widths)
    pruned = apply_pruning(graph, select_channels(graph, widths))
    macs, counted_params = count(pruned, spec.input_shape)
    assert flops(alpha) == pytest.approx(macs, rel=1e-12)
    assert params(alpha) == pytest.approx(counted_params, rel=1e-12)
    with torch.no_grad():
        out = pruned.eval()(torch.randn(2, *spec.input_shape))
    assert out.shape[0] == 2 and out.shape[1] == (1000 if spec.preset == "imagenet" else 10)


@pytest.mark.parametrize("cls", SMALL)
def test_concat_flatten_depthwise_and_residual_couplings_are_exact(cls, rng):
    for _ in range(5):
        model = cls()
        graph = analyze(model, cls.input_shape)
        flops, params = build_cost(graph, "flops"), build_cost(graph, "params")
        widths = [int(rng.integers(1, g.width + 1)) for g in graph.groups]
        alpha = np.array(widths) / np.array(graph.widths)
        pruned = apply_pruning(graph, select_channels(graph, widths))
        macs, counted = count(pruned, cls.input_shape)
        assert (flops(alpha), params(alpha)) == (pytest.approx(macs), pytest.approx(counted))


def test_groups_of_the_concat_net():
    model = ConcatNet()
    graph = analyze(model, ConcatNet.input_shape)
    by_root = {g.root: g for g in graph.groups}
    # each concatenated branch is its own group; the depthwise conv shares its input's
    assert by_root["a.0"].width == 16 and by_root["b.0"].width == 24
    assert set(by_root["a.0"].members) == {"a.0", "a.1"}
    # the classifier's outputs are fixed; fc1's are prunable
    assert "fc2" not in by_root and by_root["fc1"].width == 24
    # activations are read after BN and ReLU where they follow the layer directly
    assert dict(zip(by_root["b.0"].members, by_root["b.0"].capture))["b.0"] == "b.0"
    assert dict(zip(by_root["pw"].members, by_root["pw"].capture))["pw"] == "pw_act"
    layers = {layer.name: layer for layer in graph.layers}
    index = {g.root: g.index for g in graph.groups}
    assert layers["bn"].out_dim.coefs == {index["a.0"]: 16.0, index["b.0"]: 24.0}
    assert layers["fc1"].in_dim.coefs == {index["pw"]: 32.0 * 16}


def test_residual_stream_is_one_group():
    graph = analyze(ResidualNet(), ResidualNet.input_shape)
    stream = next(g for g in graph.groups if "stem.0" in g.members)
    assert set(stream.members) == {"stem.0", "b1.1"}
    wide = next(g for g in graph.groups if "proj.0" in g.members)
    assert set(wide.members) == {"proj.0", "b2.1"}
    assert [g.root for g in graph.groups][0] == "stem.0"  # execution order


def test_gradient_matches_finite_differences(rng):
    graph = analyze(ResidualNet(), ResidualNet.input_shape)
    cost = build_cost(graph, "flops")
    alpha = rng.uniform(0.2, 1.0, len(graph.groups))
    eps = 1e-6
    numeric = [(cost(alpha + eps * e) - cost(alpha - eps * e)) / (2 * eps)
               for e in np.eye(len(alpha))]
    np.testing.assert_allclose(cost.gradient(alpha), numeric, rtol=1e-6)
    np.testing.assert_allclose(cost.matrix, cost.matrix.T)


def test_model_that_fails_at_the_input_shape():
    with pytest.raises(ValueError, match="does not run on input shape"):
        analyze(ConcatNet(), (3, 20, 20))


def test_shared_conv_is_coupled_and_counted_per_call():
    """A conv with parameters used twice keeps one width for both uses (it is
    coupled to what feeds it), and its MACs count both calls."""
    from tests.small_models import SharedConvNet

    graph = analyze(SharedConvNet(), (3, 8, 8))
    assert [g.members for g in graph.groups] == [["stem", "conv"]]
    conv = next(layer for layer in graph.layers if layer.name == "conv")
    assert conv.positions == 2 * 8 * 8
    flops = build_cost(graph, "flops").full()
    assert flops == 3 * 16 * 9 * 64 + 16 * 16 * 9 * 64 * 2 + 16 * 3


def test_amounts():
    assert parse_amount("283M") == 283e6
    assert parse_amount("2.5k") == 2500
    assert parse_amount("1G") == 1e9
    assert format_amount(283e6) == "283.00M"
    for bad in ("abc", "-3M", "0", "nan"):
        with pytest.raises(ValueError):
            parse_amount(bad)
