"""`python -m experiments.train --model cifar_vgg11_bn --data cifar10-train [--workdir
DIR] [--config default|debug] [--export PATH [--float16]] [--epochs N] [--width W] ...`

Trains one model (see `experiments/train/README.md`), resuming from `<workdir>/checkpoint.npz`
when present, evaluates on the CIFAR-10 test images and exports the weights. Kept thin,
like the flax examples' `main.py`: all logic is in `experiments.train.train`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from experiments.train import config as configs
from experiments.train import train

# option -> config key, for the options that override one config value
_OVERRIDES = {
    "data": "data",
    "eval_data": "eval_data",
    "epochs": "num_epochs",
    "width": "width",
    "batch_size": "batch_size",
    "lr": "learning_rate",
    "optimizer": "optimizer",
    "weight_decay": "weight_decay",
    "dropout": "dropout",
    "seed": "seed",
    "train_limit": "train_limit",
    "eval_limit": "eval_limit",
    "eval_every": "eval_every_epochs",
    "log_every": "log_every_steps",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.train",
        description="Train a CIFAR-10 VGG-BN or max-pool ResNet-18 with Flax and optax.",
    )
    p.add_argument("--model", required=True, choices=configs.MODELS)
    p.add_argument("--config", default="default", choices=("default", "debug"))
    p.add_argument("--workdir", default=None, help="default: out/train/<model>")
    p.add_argument(
        "--data", default=None, help="cifar10-train (default) or tfds:cifar10[:SPLIT]"
    )
    p.add_argument(
        "--eval-data",
        default=None,
        help="cifar10-test (default), tfds:cifar10:test, or '' for none",
    )
    p.add_argument("--export", default=None, help="write the final weights (.npz)")
    p.add_argument("--float16", action="store_true", help="export in float16")
    p.add_argument("--stop-after", type=int, default=None, help="stop after N steps")
    for name, kind in (
        ("epochs", int),
        ("width", int),
        ("batch-size", int),
        ("lr", float),
        ("weight-decay", float),
        ("dropout", float),
        ("seed", int),
        ("train-limit", int),
        ("eval-limit", int),
        ("eval-every", int),
        ("log-every", int),
    ):
        p.add_argument(f"--{name}", type=kind, default=None)
    p.add_argument("--optimizer", default=None, choices=("sgd", "adamw"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        key: getattr(args, opt)
        for opt, key in _OVERRIDES.items()
        if getattr(args, opt) is not None
    }
    config = configs.get_config(args.model, args.config, **overrides)
    workdir = args.workdir or f"out/train/{args.model}"
    result = train.train_and_evaluate(
        config,
        workdir,
        stop_after=args.stop_after,
        export=args.export,
        float16=args.float16,
    )
    if result.finished and result.test_accuracy is not None:
        print(
            f"test accuracy {100 * result.test_accuracy:.2f} % after {result.step} "
            f"steps ({result.seconds / 60:.1f} min in this call)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
