"""Built-in models: unpruned FLOPs (multiply-accumulates) match the paper's tables."""

import pytest
import torch

from itpl.model import zoo as models
from tests.macs import count


@pytest.mark.parametrize("name", sorted(models.BUILTIN))
def test_flops_match_the_paper_within_2_percent(name):
    spec = models.BUILTIN[name]
    macs, _ = count(models.build(name), spec.input_shape)
    assert macs / 1e6 == pytest.approx(spec.paper_mflops, rel=0.02)


@pytest.mark.parametrize("name", sorted(models.BUILTIN))
def test_output_shape(name):
    spec = models.BUILTIN[name]
    model = models.build(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *spec.input_shape))
    assert out.shape == (2, 1000 if spec.preset == "imagenet" else 10)


def test_width_multiplier_scales_mobilenets():
    full, _ = count(models.build("mobilenet_v1"), (3, 224, 224))
    half, _ = count(models.build("mobilenet_v1", width_mult=0.5), (3, 224, 224))
    assert 0.2 < half / full < 0.35  # about a quarter, plus the fixed classifier


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="mobilenet_v1"):
        models.build("alexnet")
