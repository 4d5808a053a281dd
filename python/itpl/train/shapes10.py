"""shapes10: a labelled image set made on the spot, deterministically, for demos,
benchmarks and tests that need a model which has learned something.

10 classes of 32 x 32 colour images: disk, ring, square, triangle, plus,
five-point star, bar (3:1 rectangle), L, half-disk and crescent. Each image
draws, from a generator seeded by ``(seed, index)``:

- background: two colours blended along a random linear gradient, plus a
  sinusoidal texture of random frequency, direction and phase;
- a smaller distractor shape (20-35% of the image) of a random class, in a
  colour halfway to the background's;
- over them the labelled shape, filled with a random colour (at least 0.4 away
  from the background's mean in RGB), scaled to 40-75% of the image, rotated
  by any angle, centred anywhere that keeps most of it inside;
- Gaussian pixel noise (sigma 0.07 to 0.16).

Images are normalised as ``(x - 0.5) / 0.25``; nothing is downloaded.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from itpl.train.data import LabelledData
from itpl.util.fileio import staged_outputs

CLASSES = ["disk", "ring", "square", "triangle", "plus", "star", "bar", "L", "half-disk",
           "crescent"]
SIZE = 32
def _inside(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of shape ``kind`` in its own frame (unit scale, centred at 0)."""
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    if kind == 0:
        return r < 1
    if kind == 1:
        return (r < 1) & (r > 0.6)
    if kind == 2:
        return (np.abs(u) < 0.8) & (np.abs(v) < 0.8)
    if kind == 3:
        return (v > -0.6) & (v < 1.1 - 1.9 * np.abs(u) * 0.95)
    if kind == 4:
        return ((np.abs(u) < 0.3) & (np.abs(v) < 1)) | ((np.abs(v) < 0.3) & (np.abs(u) < 1))
    if kind == 5:
        return r < 0.45 + 0.55 * np.abs(np.cos(2.5 * theta)) ** 3
    if kind == 6:
        return (np.abs(u) < 1) & (np.abs(v) < 0.33)
    if kind == 7:
        return ((u > -0.8) & (u < -0.3) & (np.abs(v) < 0.9)) | \
            ((v > 0.4) & (v < 0.9) & (u > -0.8) & (u < 0.7))
    if kind == 8:
        return (r < 1) & (v > 0)
    return (r < 1) & (np.hypot(u - 0.45, v) > 0.75)


def make_shapes10(n: int, seed: int) -> LabelledData:
    """``n`` images of shapes10 and their labels, from ``seed`` (see the docstring)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    ys, xs = (ys + 0.5) / SIZE * 2 - 1, (xs + 0.5) / SIZE * 2 - 1
    images = np.empty((n, 3, SIZE, SIZE), np.float32)
    labels = np.empty(n, np.int64)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        label = i % 10
        a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        g = np.cos(rng.uniform(0, 2 * np.pi)) * xs + np.sin(rng.uniform(0, 2 * np.pi)) * ys
        w = (g - g.min()) / (np.ptp(g) + 1e-9)
        img = a[:, None, None] * (1 - w) + b[:, None, None] * w
        f, d, p = rng.uniform(2, 8), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        img += rng.uniform(0.03, 0.12) * np.sin(f * (np.cos(d) * xs + np.sin(d) * ys) + p)
        mean_bg = img.mean(axis=(1, 2))
        for kind, scale, colour in _shapes(rng, label, mean_bg):
            cx, cy = rng.uniform(-1 + scale * 0.7, 1 - scale * 0.7, 2)
            t = rng.uniform(0, 2 * np.pi)
            u = (np.cos(t) * (xs - cx) + np.sin(t) * (ys - cy)) / scale
            v = (-np.sin(t) * (xs - cx) + np.cos(t) * (ys - cy)) / scale
            mask = _inside(kind, u, v)
            img[:, mask] = colour[:, None]
        img += rng.normal(0, rng.uniform(0.07, 0.16), img.shape)
        images[i] = ((img - 0.5) / 0.25).astype(np.float32)
        labels[i] = label
    return LabelledData(torch.from_numpy(images), torch.from_numpy(labels), list(CLASSES))


def _shapes(rng, label, mean_bg):
    """(kind, scale, colour): a distractor first, then the labelled shape on top."""
    def colour(min_distance):
        while True:
            c = rng.uniform(0, 1, 3)
            if np.linalg.norm(c - mean_bg) >= min_distance:
                return c

    distractor = (int(rng.integers(0, 10)), rng.uniform(0.2, 0.35),
                  0.5 * mean_bg + 0.5 * colour(0.3))
    return [distractor, (label, rng.uniform(0.4, 0.75), colour(0.4))]


# The splits write_splits makes: name -> (seed, default count). Other seeds give
# other images, so the three never share one.
SPLITS = {"train": (0, 6000), "val": (1, 1000), "test": (2, 5000)}


def write_splits(folder: str, counts: dict[str, int] | None = None) -> dict[str, str]:
    """Write ``train.pt``, ``val.pt`` and ``test.pt`` (``images``, ``labels``,
    ``classes``) into ``folder``, the layout ``itpl prune/finetune/eval --data``
    read; returns split -> path. ``counts`` overrides the default sizes."""
    counts = {**{k: n for k, (_, n) in SPLITS.items()}, **(counts or {})}
    bad = {k: n for k, n in counts.items() if k not in SPLITS or not int(n) >= 1}
    if bad:
        raise ValueError(f"shapes10 splits are {', '.join(SPLITS)}, each of at least 1 image; "
                         f"got {bad}")
    os.makedirs(folder, exist_ok=True)
    paths = {}
    with staged_outputs() as stage:
        for split, (seed, _) in SPLITS.items():
            d = make_shapes10(counts[split], seed)
            paths[split] = os.path.join(folder, f"{split}.pt")
            torch.save({"images": d.images, "labels": d.labels, "classes": d.classes},
                       stage.path(paths[split]))
    return paths
