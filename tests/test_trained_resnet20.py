"""The trained model the repository ships (examples/resnet20-shapes10.pt, the
demo's): it has learned shapes10, its fp32 export scores what PyTorch scores,
its int8 export stays within a point, and pruning it with real images keeps
most of its accuracy before any fine-tuning. Scores through ``itpl eval``."""

import json
from pathlib import Path

import pytest

from itpl.cli import main
from itpl.train.shapes10 import write_splits

WEIGHTS = str(Path(__file__).resolve().parents[1] / "examples" / "resnet20-shapes10.pt")
R20 = ["--model-arg", "num_classes=10"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes10")
    write_splits(str(folder), {"train": 400, "val": 10, "test": 600})
    return str(folder)


def _top1(capsys, model, data, *extra) -> float:
    capsys.readouterr()
    assert main(["eval", model, "--data", data, "--split", "test", "--json", "-q", *extra]) == 0
    return json.loads(capsys.readouterr().out)["top1"]


@pytest.mark.slow
def test_shipped_model_exports_and_prunes_with_its_accuracy(data, tmp_path, capsys):
    torch_top1 = _top1(capsys, "resnet20", data, *R20, "--weights", WEIGHTS)
    assert torch_top1 > 0.75  # chance is 0.10; 84.7% on the demo's 5000 test images

    fp32, int8 = str(tmp_path / "r20.tflite"), str(tmp_path / "r20-int8.tflite")
    assert main(["export", "resnet20", *R20, "--weights", WEIGHTS, "-o", fp32]) == 0
    assert main(["export", "resnet20", *R20, "--weights", WEIGHTS, "-o", int8,
                 "--quantize", "int8", "--data", f"{data}/train.pt"]) == 0
    assert abs(_top1(capsys, fp32, data) - torch_top1) <= 1 / 600  # at most one image
    assert abs(_top1(capsys, int8, data) - torch_top1) <= 0.02

    prefix = str(tmp_path / "half")
    assert main(["prune", "--model", "resnet20", *R20, "--weights", WEIGHTS, "--flops-ratio",
                 "0.5", "--data", f"{data}/train.pt", "--samples", "256", "-q", "-o",
                 prefix]) == 0
    pruned = _top1(capsys, f"{prefix}.plan.json", data)
    assert pruned > 0.5 * torch_top1, pruned  # batch norms re-measured: far above chance
