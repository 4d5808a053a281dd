"""int8 against fp32 on this CPU: MobileNetV1 (the built-in) exported both ways,
timed interleaved by ``itpl bench``, and the channel tile of each precision.

The int8 check needs a network whose outputs mean something (a random-init
MobileNetV1 quantizes to 20-35% output error, as random networks do), so the
model is first trained briefly on the quality benchmark's shapes10 images at
64 x 64 (``--steps`` SGD steps, about a minute on 2 cores), its batch norms
re-estimated at 224 x 224 on the calibration images; the calibration and
check images are shapes10 images upsampled to 224 x 224 (``imgs.npy``).

    python bench/bench_int8.py --out /tmp/int8-bench
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def trained_mobilenet(steps: int, out: str) -> tuple[str, str]:
    from quality import make_shapes10

    from itpl.model.zoo import build
    from itpl.train.finetune import reestimate_bn_on

    torch.manual_seed(0)
    data = make_shapes10(steps * 32 + 192, seed=5)
    up = torch.nn.functional.interpolate
    model = build("mobilenet_v1")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=4e-5)
    start = time.perf_counter()
    model.train()
    for s in range(steps):
        x = up(data.images[s * 32:(s + 1) * 32], size=64, mode="bilinear")
        loss = torch.nn.functional.cross_entropy(model(x), data.labels[s * 32:(s + 1) * 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
    images = up(data.images[-192:], size=224, mode="bilinear")
    reestimate_bn_on(model, images[:64], batch_size=32)
    with torch.no_grad():
        acc = (model(images[64:]).argmax(1) == data.labels[-128:]).float().mean().item()
    print(f"trained {steps} steps in {time.perf_counter() - start:.0f} s (last loss "
          f"{loss.item():.2f}); accuracy at 224 x 224 on 128 held-out images {acc:.1%}")
    weights, calib = os.path.join(out, "mbv1.pt"), os.path.join(out, "imgs.npy")
    torch.save(model.state_dict(), weights)
    np.save(calib, images.numpy())
    return weights, calib


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="int8-bench")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    from itpl.cli import main as itpl
    from itpl.deploy.devices.local import LocalDevice
    from itpl.latency.runs import measure_channel_tile

    weights, calib = trained_mobilenet(args.steps, args.out)
    fp32, int8 = (os.path.join(args.out, f"mbv1-{p}.tflite") for p in ("fp32", "int8"))
    for argv_ in (["export", "mobilenet_v1", "--weights", weights, "-o", fp32],
                  ["export", "mobilenet_v1", "--weights", weights, "-o", int8, "--quantize",
                   "int8", "--data", calib, "--samples", "128", "--check-samples", "64"]):
        print("$ itpl " + " ".join(argv_))
        if itpl(argv_) != 0:
            raise SystemExit(1)
    print(f"$ itpl bench {fp32} {int8} --threads {args.threads}")
    itpl(["bench", fp32, int8, "--threads", str(args.threads)])
    for precision in ("fp32", "int8"):
        tiles = [measure_channel_tile(LocalDevice(), threads=args.threads, precision=precision)
                 for _ in range(3)]
        print(f"channel tile, {precision}: {tiles} (3 measurements)")


if __name__ == "__main__":
    main()
