"""shapes10, the demo's and the quality bench's data set: deterministic, balanced,
and written in the layout --data reads."""

import numpy as np
import pytest
import torch

from itpl.train.data import load_calibration, load_split
from itpl.train.shapes10 import CLASSES, make_shapes10, write_splits


def test_same_seed_same_images_other_seed_other_images():
    a, b, c = make_shapes10(30, 0), make_shapes10(30, 0), make_shapes10(30, 1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.allclose(a.images, c.images)
    assert a.images.shape == (30, 3, 32, 32) and a.images.dtype == torch.float32
    assert torch.isfinite(a.images).all()
    assert np.bincount(a.labels.numpy(), minlength=10).tolist() == [3] * 10
    assert a.classes == CLASSES


def test_written_splits_read_back_through_the_data_loaders(tmp_path):
    paths = write_splits(str(tmp_path), {"train": 12, "val": 5, "test": 7})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.pt", "train.pt", "val.pt"]
    test = load_split(str(tmp_path), "test", (3, 32, 32))
    assert len(test) == 7 and test.classes == CLASSES
    assert torch.equal(test.images, make_shapes10(7, 2).images)
    calib = load_calibration(paths["train"], (3, 32, 32), samples=12)
    assert calib.shape == (12, 3, 32, 32)


def test_bad_counts_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="at least 1 image"):
        write_splits(str(tmp_path), {"test": 0})
    with pytest.raises(ValueError, match="splits are train, val, test"):
        write_splits(str(tmp_path), {"holdout": 3})
    assert list(tmp_path.iterdir()) == []
