"""The furthest stage of the pipeline that exists today: nHSIC between layers.

A small CNN (random weights) sees 128 random images; a forward hook turns each
conv layer's output into its centred Gram as soon as it is produced (only one
layer's activations are alive at a time), then the biased (ITPruner Eq. 8) and
debiased nHSIC matrices are printed. `itpl prune` builds on exactly this.
"""

import time

import numpy as np
import torch
from torch import nn

from itpl.method import hsic


def small_cnn() -> nn.Sequential:
    layers, cin = [], 3
    for cout, stride in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)]:
        layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))


def main() -> None:
    torch.manual_seed(0)
    model = small_cnn().eval()
    images = torch.randn(128, 3, 64, 64)
    grams, names = [], []

    def keep_gram(name):
        def hook(_module, _inputs, output):
            grams.append(hsic.centered_gram(output.detach().numpy()))
            names.append(name)

        return hook

    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for index, module in enumerate(relus, start=1):
        module.register_forward_hook(keep_gram(f"relu{index}"))
    t0 = time.perf_counter()
    with torch.no_grad():
        model(images)
    t_gram = time.perf_counter() - t0
    for debiased in (False, True):
        m = hsic.nhsic_matrix(grams, debiased=debiased)
        print(f"\n{'debiased' if debiased else 'biased (Eq. 8)'} nHSIC, {len(names)} layers, "
              f"{images.shape[0]} samples:")
        print("        " + " ".join(f"{n:>7s}" for n in names))
        for name, row in zip(names, m):
            print(f"{name:>7s} " + " ".join(f"{v:7.3f}" for v in row))
    print(f"\nforward pass + {len(grams)} centred Grams: {t_gram:.2f} s "
          f"({hsic.gram_kernel()} kernel, {hsic.default_threads()} threads)")
    print(f"mean off-diagonal: biased {off_diag_mean(grams, False):.3f}, "
          f"debiased {off_diag_mean(grams, True):.3f}")


def off_diag_mean(grams, debiased):
    m = hsic.nhsic_matrix(grams, debiased=debiased)
    return float(m[~np.eye(len(m), dtype=bool)].mean())


if __name__ == "__main__":
    main()
