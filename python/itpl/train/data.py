"""Calibration data: an image folder read with Pillow, a tensor file, or random
inputs; and labelled train/val splits for ``itpl finetune`` and ``itpl eval``.

Selection is deterministic: files are sorted, then ``samples`` of them are
drawn with ``numpy.random.default_rng(seed)``; the same arguments always give
the same batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


@dataclass(frozen=True)
class Preset:
    """How images are resized and normalised for a model family."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_ratio: float  # centre crop of a resize to size / crop_ratio (1: plain resize)


PRESETS = {
    "imagenet": Preset((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.875),
    "cifar": Preset((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 1.0),
}


def preset(name: str, mean=None, std=None) -> Preset:
    """A named preset, with ``mean``/``std`` overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; use one of {', '.join(PRESETS)}")
    base = PRESETS[name]
    for name, values in (("mean", mean), ("std", std)):
        bad = [v for v in values or () if not np.isfinite(v) or (name == "std" and v <= 0)]
        if bad:  # else every image becomes NaN/Inf and an inner layer gets the blame
            raise ValueError(f"`{name}` {bad[0]:g}: " + ("each std must be a positive number"
                                                        if name == "std" else "not a number"))
    return Preset(tuple(mean) if mean else base.mean, tuple(std) if std else base.std,
                  base.crop_ratio)


def check_finite(images: torch.Tensor, where: str) -> torch.Tensor:
    """Refuse images holding NaN or Inf, naming the source and the first sample."""
    bad = ~torch.isfinite(images.reshape(images.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0, 0])
        raise ValueError(f"{where}: {int(bad.sum())} of {images.shape[0]} samples hold NaN or "
                         f"Inf values (the first is sample {first}); remove or fix them")
    return images


def _pick(count: int, samples: int, seed: int) -> np.ndarray:
    if samples < 1:
        raise ValueError(f"`samples` must be at least 1, got {samples}")
    if count <= samples:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, samples, replace=False))


def list_images(folder: str) -> list[str]:
    """Image files under ``folder`` (recursive), sorted."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"data folder '{folder}' does not exist")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not found:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under '{folder}'")
    return found


def load_image(path: str, shape, norm: Preset) -> torch.Tensor:
    """One image as a normalised ``(C, H, W)`` float32 tensor."""
    from PIL import Image

    channels, height, width = shape
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if norm.crop_ratio < 1:
                scale = max(height, width) / norm.crop_ratio / min(img.size)
                img = img.resize((max(width, round(img.size[0] * scale)),
                                  max(height, round(img.size[1] * scale))), Image.BILINEAR)
                left, top = (img.size[0] - width) // 2, (img.size[1] - height) // 2
                img = img.crop((left, top, left + width, top + height))
            else:
                img = img.resize((width, height), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except Exception as exc:
        raise ValueError(f"cannot read image '{path}': {type(exc).__name__}: {exc}") from None
    arr = arr.reshape(height, width, -1).transpose(2, 0, 1)
    mean = np.asarray(norm.mean[:channels], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(norm.std[:channels], dtype=np.float32).reshape(-1, 1, 1)
    return torch.from_numpy(np.ascontiguousarray((arr - mean) / std))


def _load_tensor_file(path: str) -> torch.Tensor:
    try:
        if path.endswith(".npy"):
            data = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read tensor file '{path}': {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if isinstance(data, dict):  # e.g. {"images": ..., "labels": ...}
        for key in ("images", "data", "x", "inputs"):
            if isinstance(data.get(key), torch.Tensor):
                data = data[key]
                break
    if not isinstance(data, torch.Tensor):
        raise ValueError(f"tensor file '{path}' holds {type(data).__name__}, not a tensor "
                         "(or a dict with an 'images' tensor)")
    return data


def load_calibration(source: str, input_shape, *, samples: int = 256, seed: int = 0,
                     norm: Preset = PRESETS["imagenet"], progress: bool = False) -> torch.Tensor:
    """Calibration batch ``(n, *input_shape)`` from an image folder or tensor file.

    Parameters
    ----------
    source : str
        A folder of images (any depth, e.g. class subfolders), or a ``.npy`` /
        ``.pt`` file holding ``(N, C, H, W)`` floats (used as they are) or
        ``(N, H, W, C)`` / ``(N, C, H, W)`` uint8 images (scaled and normalised).
    input_shape : tuple of int
        ``(C, H, W)`` the model expects.
    samples, seed : int
        How many samples to draw, and the seed of the draw.
    norm : Preset
        Resizing and normalisation of images.
    """
    shape = tuple(int(s) for s in input_shape)
    if os.path.isdir(source):
        paths = list_images(source)
        chosen = [paths[i] for i in _pick(len(paths), samples, seed)]
        if progress:
            from tqdm import tqdm

            chosen = tqdm(chosen, desc="images", unit="img", leave=False)
        return torch.stack([load_image(p, shape, norm) for p in chosen])
    if not os.path.exists(source):
        raise FileNotFoundError(f"calibration data '{source}' does not exist")
    if not source.endswith((".npy", ".pt", ".pth")):
        raise ValueError(f"calibration data '{source}' must be an image folder, .npy or .pt file")
    return calibration_tensor(_load_tensor_file(source), shape, samples=samples, seed=seed,
                              norm=norm, where=f"tensor file '{source}'")


def calibration_tensor(data, input_shape, *, samples: int = 256, seed: int = 0,
                       norm: Preset = PRESETS["imagenet"], where: str = "`data`") -> torch.Tensor:
    """Calibration batch from images held in memory, drawn as from a tensor file.

    ``data``: a tensor or array of ``(N, C, H, W)`` floats (used as they are)
    or ``(N, H, W, C)`` / ``(N, C, H, W)`` uint8 images (scaled and
    normalised by ``norm``); ``where`` names it in messages.
    """
    shape = tuple(int(s) for s in input_shape)
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if not isinstance(data, torch.Tensor):
        raise ValueError(f"{where} is a {type(data).__name__}, not a tensor of images")
    if data.dim() == len(shape) + 1 and data.dtype == torch.uint8:
        if tuple(data.shape[1:]) == shape[1:] + shape[:1]:  # channels last
            data = data.permute(0, 3, 1, 2)
        mean = torch.tensor(norm.mean[: shape[0]]).reshape(-1, 1, 1)
        std = torch.tensor(norm.std[: shape[0]]).reshape(-1, 1, 1)
        data = (data.float() / 255.0 - mean) / std
    if data.dim() != len(shape) + 1 or tuple(data.shape[1:]) != shape:
        raise ValueError(f"{where} has shape {tuple(data.shape)}; expected "
                         f"(N, {', '.join(map(str, shape))})")
    if not data.is_floating_point():
        raise ValueError(f"{where} holds {data.dtype}; expected float or uint8 images")
    idx = torch.from_numpy(_pick(data.shape[0], samples, seed))
    return check_finite(data[idx].float().contiguous(), where)


def random_calibration(input_shape, *, samples: int = 256, seed: int = 0) -> torch.Tensor:
    """Standard normal inputs: keep a demo runnable; importance from them means nothing."""
    _pick(samples, samples, seed)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(samples, *input_shape, generator=gen)


# --- labelled data (itpl finetune, itpl eval) ----------------------------------

@dataclass
class LabelledData:
    """Images and class labels held in memory.

    ``images`` is ``(N, C, H, W)`` float32, normalised; ``labels`` int64 in
    ``[0, len(classes))``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_split(data: str, split: str, input_shape, *, norm: Preset = PRESETS["imagenet"],
               progress: bool = False) -> LabelledData:
    """The ``split`` (``train`` or ``val``) of a data folder.

    ``data/split/`` is an image folder with one subfolder per class (sorted
    names give the class indices), or ``data/split.pt`` / ``data/split.npz``
    holds ``images`` (``(N, C, H, W)`` floats, or uint8 images, channels first
    or last) and ``labels``, with optional ``classes`` names.
    """
    shape = tuple(int(s) for s in input_shape)
    folder = os.path.join(data, split)
    if os.path.isdir(folder):
        classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        if not classes:
            raise ValueError(f"'{folder}' has no class subfolders; put each class's images in "
                             f"{folder}/CLASS_NAME/")
        paths, labels = [], []
        for index, name in enumerate(classes):
            try:
                found = list_images(os.path.join(folder, name))
            except ValueError:
                raise ValueError(f"class folder '{os.path.join(folder, name)}' has no images") from None
            paths += found
            labels += [index] * len(found)
        if progress:
            from tqdm import tqdm

            paths = tqdm(paths, desc=f"{split} images", unit="img", leave=False)
        images = torch.stack([load_image(p, shape, norm) for p in paths])
        return LabelledData(images, torch.tensor(labels, dtype=torch.int64), classes)
    for ext in (".pt", ".npz"):
        if os.path.isfile(folder + ext):
            return _load_labelled_file(folder + ext, shape, norm)
    if not os.path.isdir(data):
        raise FileNotFoundError(f"data folder '{data}' does not exist")
    raise FileNotFoundError(f"no '{split}' data in '{data}': expected a folder {split}/ with one "
                            f"subfolder per class, or {split}.pt / {split}.npz")


def _load_labelled_file(path: str, shape, norm: Preset) -> LabelledData:
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                raw = {k: f[k] for k in f.files}
            raw = {k: (torch.from_numpy(v) if k != "classes" else [str(c) for c in v])
                   for k, v in raw.items()}
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read '{path}': {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("images"), torch.Tensor) \
            or not isinstance(raw.get("labels"), torch.Tensor):
        raise ValueError(f"'{path}' must hold a dict with 'images' and 'labels' tensors")
    images, labels = raw["images"], raw["labels"].long().reshape(-1)
    if images.dtype == torch.uint8:
        if images.dim() == 4 and tuple(images.shape[1:]) == shape[1:] + shape[:1]:
            images = images.permute(0, 3, 1, 2)
        mean = torch.tensor(norm.mean[: shape[0]]).reshape(-1, 1, 1)
        std = torch.tensor(norm.std[: shape[0]]).reshape(-1, 1, 1)
        images = (images.float() / 255.0 - mean) / std
    if images.dim() != 4 or tuple(images.shape[1:]) != shape or not images.is_floating_point():
        raise ValueError(f"'{path}' has images of shape {tuple(images.shape)} "
                         f"({images.dtype}); expected (N, {', '.join(map(str, shape))}) "
                         "floats or uint8")
    if labels.shape[0] != images.shape[0] or labels.numel() == 0:
        raise ValueError(f"'{path}' has {images.shape[0]} images but {labels.shape[0]} labels")
    if int(labels.min()) < 0:
        raise ValueError(f"'{path}' has negative labels")
    classes = raw.get("classes") or [str(i) for i in range(int(labels.max()) + 1)]
    if int(labels.max()) >= len(classes):
        raise ValueError(f"'{path}' has label {int(labels.max())} but {len(classes)} classes")
    return LabelledData(check_finite(images.float().contiguous(), f"'{path}'"), labels,
                        list(classes))
