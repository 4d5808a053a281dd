"""The label-free output check that chooses beta (itpl.method.beta) and Eq. 9 at another beta."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from itpl.method.beta import CHECK_SAMPLES, choose_beta, output_divergence
from itpl.method.importance import compute_importance, with_beta
from itpl.method.solve import solve
from itpl.method.widths import AllowedWidths
from itpl.model.cost import build_cost
from itpl.model.graph import analyze
from itpl.model.surgery import pruned_copy
from tests.small_models import ResidualNet

SHAPE = (3, 16, 16)


def _pruned(model, widths):
    return pruned_copy(model, SHAPE, widths)


@pytest.fixture
def trained():
    torch.manual_seed(0)
    model = ResidualNet().eval()
    # running statistics unlike a fresh model's, as after training
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def test_divergence_is_the_kl_of_softmax_outputs():
    torch.manual_seed(1)
    a, b = nn.Linear(6, 4), nn.Linear(6, 4)  # no batch norm: nothing re-estimated
    x = torch.randn(30, 6)
    p = a(x).detach().double().numpy()
    q = b(x).detach().double().numpy()
    p = np.exp(p - p.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.exp(q - q.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    expected = np.mean(np.sum(p * np.log(p / q), axis=1))
    assert output_divergence(a, b, x) == pytest.approx(expected, rel=1e-9)
    assert output_divergence(a, copy.deepcopy(a), x) == pytest.approx(0.0, abs=1e-12)


def test_batch_norm_is_re_estimated_and_the_reference_untouched(trained):
    x = torch.randn(48, *SHAPE)
    before = copy.deepcopy(trained.state_dict())
    pruned = _pruned(trained, [8, 8, 16, 16])
    d = output_divergence(trained, pruned, x, batch_size=16)
    assert d > 0 and not trained.training and not pruned.training
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(value, before[key])
    # the first batch norm now holds its input's mean over x and the mean of
    # the (unbiased) variances of the three batches of 16
    conv, norm = pruned.stem[0], pruned.stem[1]
    with torch.no_grad():
        y = conv(x).double()
    torch.testing.assert_close(norm.running_mean.double(), y.mean(dim=(0, 2, 3)),
                               rtol=1e-5, atol=1e-6)
    per_batch = [b.transpose(0, 1).reshape(y.shape[1], -1).var(dim=1) for b in y.split(16)]
    torch.testing.assert_close(norm.running_var.double(), torch.stack(per_batch).mean(0),
                               rtol=1e-5, atol=1e-6)


def test_outputs_that_are_not_class_scores_are_refused():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(ValueError, match="pass `beta`"):
        output_divergence(Pair(), Pair(), torch.randn(4, 3))


def test_with_beta_reuses_the_nhsic_matrix(trained):
    graph = analyze(copy.deepcopy(trained), SHAPE)
    imp = compute_importance(graph, torch.randn(24, *SHAPE))
    same = with_beta(imp, imp.beta)
    np.testing.assert_array_equal(same.layer_importance, imp.layer_importance)
    np.testing.assert_array_equal(same.group_mean_importance, imp.group_mean_importance)
    flat = with_beta(imp, 0.0)
    np.testing.assert_array_equal(flat.layer_importance, np.ones(len(imp.layers)))
    steep = with_beta(imp, 2 * imp.beta)  # Eq. 9: the spread squares
    np.testing.assert_allclose(steep.layer_importance, imp.layer_importance ** 2, rtol=1e-12)


def test_choose_beta_keeps_the_candidate_closest_to_the_unpruned_outputs(trained):
    graph = analyze(copy.deepcopy(trained), SHAPE)
    images = torch.randn(CHECK_SAMPLES + 20, *SHAPE)
    imp = compute_importance(graph, images)
    cost = build_cost(graph, "flops")

    def widths_for(importance):
        return solve(importance.group_mean_importance, cost, 0.45 * cost.full(),
                     graph.widths, allowed=AllowedWidths(round_to=4)).widths

    scales = (1.0, 0.25, 4.0)
    chosen, record = choose_beta(trained, imp, widths_for, lambda w: _pruned(trained, w),
                                 images, scales=scales)
    assert record["samples"] == CHECK_SAMPLES and record["scales"] == list(scales)
    assert record["betas"] == pytest.approx([imp.beta * s for s in scales])
    for w, s, kl in zip(record["widths"], scales, record["kl"]):
        assert w == widths_for(with_beta(imp, imp.beta * s))
        assert kl == pytest.approx(output_divergence(trained, _pruned(trained, w),
                                                     images[:CHECK_SAMPLES]))
    best = int(np.argmin(record["kl"]))
    assert record["chosen_scale"] == scales[best] and chosen.beta == pytest.approx(
        imp.beta * scales[best])
    # ties keep the earliest scale
    _, tied = choose_beta(trained, imp, widths_for, lambda w: _pruned(trained, w), images,
                          scales=(2.0, 2.0))
    assert tied["chosen_scale"] == 2.0 and tied["kl"][0] == tied["kl"][1]
