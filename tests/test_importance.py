"""Importance: activations captured where the layers produce them, nHSIC against
the float64 reference, Eq. 9 with its default beta, dead layers, bad activations."""

import numpy as np
import pytest
import torch
from torch import nn

from itpl.method import hsic
from itpl.method.importance import compute_importance, importance_from_nhsic
from itpl.model.graph import analyze
from tests import reference
from tests.conftest import EXACT_KERNEL, ROUNDING_KERNELS
from tests.small_models import ConcatNet, ResidualNet


def _reference_activations(model, graph, x):
    """Each member's activation, captured independently at its capture point."""
    acts = {}
    points = {p: m for g in graph.groups for m, p in zip(g.members, g.capture)}
    handles = [model.get_submodule(p).register_forward_hook(
        lambda mod, a, out, p=p: acts.__setitem__(p, out.detach().clone()))
        for p in points]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return acts


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("cls", [ConcatNet, ResidualNet])
@pytest.mark.parametrize("kernel", [EXACT_KERNEL, *ROUNDING_KERNELS])
def test_nhsic_matrix_matches_the_float64_reference(monkeypatch, cls, debiased, kernel):
    monkeypatch.setenv(hsic.KERNEL_ENV, kernel)
    torch.manual_seed(0)
    model = cls()
    graph = analyze(model, cls.input_shape)
    x = torch.randn(24, *cls.input_shape)
    imp = compute_importance(graph, x, debiased=debiased)
    acts = _reference_activations(model, graph, x)
    points = {m: p for g in graph.groups for m, p in zip(g.members, g.capture)}
    feats = [acts[points[name]].double().numpy().reshape(24, -1) for name in imp.layers]
    expected = np.array([[reference.nhsic(a, b, debiased=debiased) for b in feats] for a in feats])
    if not debiased:
        expected = np.clip(expected, 0, 1)
    if kernel in ROUNDING_KERNELS:
        # Rounding to bf16 moves a Gram by about U_BF16 relative (the errors of
        # its many products partly cancel), and nHSIC, a cosine between two
        # Grams, by at most about 4x that. An 8-bit kernel's values are off by
        # at most 1/510 of their block's widest range, about U_BF16 of it
        # (here up to 1.1e-3 against 7.8e-3). Eq. 9 is then checked on the
        # kernel's own matrix: beta = 1 / spread amplifies any nHSIC error.
        np.testing.assert_allclose(imp.nhsic, expected, atol=4 * reference.U_BF16)
        expected = imp.nhsic
    else:
        np.testing.assert_allclose(imp.nhsic, expected, atol=1e-6)
    sums = expected.sum(1) - 1
    beta = 1 / (sums.max() - sums.min())
    np.testing.assert_allclose(imp.layer_importance, np.exp(-beta * (sums - sums.min())), rtol=1e-5)
    for g in graph.groups:  # a group's layers share one alpha: their terms add
        rows = [i for i, gi in enumerate(imp.layer_groups) if gi == g.index]
        assert imp.group_importance[g.index] == pytest.approx(imp.layer_importance[rows].sum())
        assert imp.group_mean_importance[g.index] == pytest.approx(
            imp.layer_importance[rows].mean())


def test_default_beta_spreads_importance_by_e():
    m = np.array([[1, .9, .2], [.9, 1, .5], [.2, .5, 1]])
    imp, beta, dead = importance_from_nhsic(m)
    sums = np.array([1.1, 1.4, 0.7])
    assert beta == pytest.approx(1 / 0.7)
    assert imp.max() == pytest.approx(1) and imp.min() == pytest.approx(np.exp(-1))
    assert np.argmax(imp) == 2  # least redundant layer is the most important
    imp2, beta2, _ = importance_from_nhsic(m, beta=10.0)
    np.testing.assert_allclose(imp2, np.exp(-10 * (sums - sums.min())))
    assert not dead.any()


def test_dead_layer_gets_zero_importance_not_one():
    m = np.array([[1, .9, 0], [.9, 1, 0], [0, 0, 0]], dtype=float)
    imp, _, dead = importance_from_nhsic(m)
    assert dead.tolist() == [False, False, True]
    assert imp[2] == 0 and imp[0] == imp[1] == 1
    with pytest.raises(ValueError, match="constant"):
        importance_from_nhsic(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="beta"):
        importance_from_nhsic(m, beta=-1)


def test_constant_layer_is_reported_dead():
    model = ResidualNet()
    with torch.no_grad():  # b1's first conv outputs zero, so its second conv a constant
        model.b1[0][0].weight.zero_()
        model.b1[0][1].bias.zero_()
    graph = analyze(model, ResidualNet.input_shape)
    imp = compute_importance(graph, torch.randn(16, *ResidualNet.input_shape))
    assert sorted(imp.dead) == ["b1.0.0", "b1.1"]
    assert imp.layer_importance[imp.layers.index("b1.0.0")] == 0
    assert imp.layer_importance[imp.layers.index("b1.1")] == 0
    assert imp.layer_importance.max() == 1


def test_nan_activation_names_the_layer():
    model = ResidualNet()
    with torch.no_grad():
        model.b2[0][0].weight[0, 0, 0, 0] = float("nan")
    graph = analyze(model, ResidualNet.input_shape)
    with pytest.raises(ValueError, match=r"layer 'b2\.0\.2'.*NaN"):
        compute_importance(graph, torch.randn(8, *ResidualNet.input_shape))


def test_bad_calibration_batches():
    graph = analyze(ResidualNet(), ResidualNet.input_shape)
    with pytest.raises(ValueError, match="sample shape"):
        compute_importance(graph, torch.randn(8, 3, 8, 8))
    with pytest.raises(ValueError, match="at least 4"):
        compute_importance(graph, torch.randn(3, *ResidualNet.input_shape), debiased=True)


def test_capture_runs_in_eval_mode_without_grad():
    model = ResidualNet().train()
    graph = analyze(model, ResidualNet.input_shape)
    seen = []
    model.stem[0].register_forward_hook(
        lambda m, a, out: seen.append((m.training, torch.is_grad_enabled())))
    compute_importance(graph, torch.randn(8, *ResidualNet.input_shape))
    assert seen == [(False, False)]
    running = model.stem[1].running_mean.clone()
    compute_importance(graph, torch.randn(8, *ResidualNet.input_shape) + 5)
    assert torch.equal(model.stem[1].running_mean, running)  # BN statistics untouched


def test_progress_bar_counts_layers(capsys):
    graph = analyze(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
                                  nn.Conv2d(8, 2, 1)), (3, 10, 10))
    compute_importance(graph, torch.randn(8, 3, 10, 10), progress=True)
    err = capsys.readouterr().err
    assert "importance:" in err and "/2 " in err  # a bar over the 2 captured layers


def test_a_kernel_this_cpu_cannot_run_fails_before_the_forward_pass(monkeypatch):
    monkeypatch.setenv(hsic.KERNEL_ENV, "sse9")
    model = ConcatNet()
    graph = analyze(model, ConcatNet.input_shape)
    ran = []
    model.register_forward_hook(lambda *a: ran.append(1))
    with pytest.raises(ValueError, match=r"^ITPL_GRAM_KERNEL='sse9': unknown Gram kernel"):
        compute_importance(graph, torch.randn(8, *ConcatNet.input_shape))
    assert not ran
