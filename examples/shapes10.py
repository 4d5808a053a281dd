"""Write the shapes10 data set (itpl.train.shapes10) as train.pt / val.pt / test.pt.

    python examples/shapes10.py OUT_FOLDER [--train 6000] [--val 1000] [--test 5000]

The folder is what ``itpl prune --data OUT/train.pt``, ``itpl finetune --data
OUT`` and ``itpl eval --data OUT --split test`` read. The same counts always
give the same images (about 7 s for the default 12,000 on 2 cores).

``examples/resnet20-shapes10.pt``, the trained model of ``make demo``, was
trained on the default folder with::

    itpl finetune resnet20 --model-arg num_classes=10 --data OUT --epochs 12 \\
        --lr 0.04 --seed 0 -o resnet20-shapes10
"""

import argparse
import sys
import time

from itpl.train.shapes10 import SPLITS, write_splits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    for split, (_, count) in SPLITS.items():
        p.add_argument(f"--{split}", type=int, default=count, help=f"images (default {count})")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        paths = write_splits(args.folder, {s: getattr(args, s) for s in SPLITS})
    except (ValueError, OSError) as exc:
        p.error(str(exc))  # one line and exit status 2; write_splits wrote nothing
    print(f"shapes10: wrote {', '.join(paths.values())} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
