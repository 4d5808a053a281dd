"""Calibration data: image folders through Pillow, tensor files, deterministic draws."""

import numpy as np
import pytest
import torch
from PIL import Image

from itpl.train.data import PRESETS, list_images, load_calibration, preset, random_calibration


def _folder(tmp_path, count=6, size=(40, 30)):
    for i in range(count):
        sub = tmp_path / f"class{i % 2}"
        sub.mkdir(exist_ok=True)
        Image.new("RGB", size, (i * 40, 100, 200)).save(sub / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_image_folder_is_resized_and_normalised(tmp_path):
    folder = _folder(tmp_path)
    batch = load_calibration(str(folder), (3, 16, 16), samples=10, norm=PRESETS["imagenet"])
    assert batch.shape == (6, 3, 16, 16) and batch.dtype == torch.float32
    # sorted walk: class0/img0 first, a flat colour (0, 100, 200)
    mean, std = PRESETS["imagenet"].mean, PRESETS["imagenet"].std
    expected = [(v / 255 - m) / s for v, m, s in zip((0, 100, 200), mean, std)]
    torch.testing.assert_close(batch[0].mean((1, 2)), torch.tensor(expected), atol=1e-5, rtol=0)


def test_draw_is_deterministic_and_seeded(tmp_path):
    folder = _folder(tmp_path, count=12)
    a = load_calibration(str(folder), (3, 8, 8), samples=4, seed=1)
    b = load_calibration(str(folder), (3, 8, 8), samples=4, seed=1)
    c = load_calibration(str(folder), (3, 8, 8), samples=4, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(list_images(str(folder))) == 12


def test_tensor_files(tmp_path):
    x = np.random.default_rng(0).standard_normal((10, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    got = load_calibration(str(tmp_path / "x.npy"), (3, 8, 8), samples=10)
    np.testing.assert_array_equal(got.numpy(), x)
    torch.save({"images": torch.from_numpy(x)}, tmp_path / "x.pt")
    assert load_calibration(str(tmp_path / "x.pt"), (3, 8, 8), samples=3).shape == (3, 3, 8, 8)
    u8 = np.full((5, 8, 8, 3), 255, dtype=np.uint8)  # channels-last uint8 images
    np.save(tmp_path / "u8.npy", u8)
    got = load_calibration(str(tmp_path / "u8.npy"), (3, 8, 8), norm=PRESETS["cifar"])
    expected = (1 - np.array(PRESETS["cifar"].mean)) / np.array(PRESETS["cifar"].std)
    np.testing.assert_allclose(got[0, :, 0, 0].numpy(), expected, rtol=1e-6)


def test_bad_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_calibration(str(tmp_path / "missing"), (3, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_calibration(str(tmp_path / "empty"), (3, 8, 8))
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 9, 9), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected \(N, 3, 8, 8\)"):
        load_calibration(str(tmp_path / "wrong.npy"), (3, 8, 8))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        load_calibration(str(tmp_path / "bad"), (3, 8, 8))
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match="image folder, .npy or .pt"):
        load_calibration(str(tmp_path / "x.csv"), (3, 8, 8))
    with pytest.raises(ValueError, match="samples"):
        random_calibration((3, 8, 8), samples=0)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("coco")


def test_random_calibration_is_seeded():
    assert torch.equal(random_calibration((3, 4, 4), samples=5, seed=3),
                       random_calibration((3, 4, 4), samples=5, seed=3))
