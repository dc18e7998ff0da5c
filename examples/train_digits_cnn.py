r"""Each classification head on a small convolutional network over the 8 x 8 digits images.

The data (scikit-learn's digits: 1797 images of 8 x 8 pixels, shipped with scikit-learn, nothing
is downloaded), the split, the training loop, the optimisers, the table and the plots are those of
``examples/train_digits.py`` (its :func:`run`); only the backbone changes, to a convolutional
network on the images:

``conv 3x3 (1 -> 16), BatchNorm, ReLU -> conv 3x3 (16 -> 32), BatchNorm, ReLU -> max-pool 2
(4 x 4) -> conv 3x3 (32 -> 64), BatchNorm, ReLU -> global average pool -> 64 features``.

The heads on its 64 features:

* ``linear``: ``nn.Linear(64, 10)``; ``ebv``: :class:`grassmann.EBVHead` (fixed Equiangular
  Basis Vectors, the paper's scale 1/0.07); ``fixed-random`` and ``simplex``:
  :class:`grassmann.FixedClassifierHead`;
* ``gcr-k4``: :class:`grassmann.GrassmannHead` with 4-dimensional class subspaces trained by
  :class:`grassmann.optim.GCRSGD` (the exact update of the GCR paper); ``gcr-rsgd-k4``: the same
  head with geoopt's ``RiemannianSGD``; ``gcr-adamw-k4``: AdamW for the network and GCRSGD for
  the subspaces (:class:`grassmann.optim.CombinedOptimizer`);
* ``gcr-mixed``: a dimension per class (2 for the even digits, 6 for the odd ones: a
  demonstration of ``subspace_dim=[k_1, ..., k_C]``, not a tuned choice), with GCRSGD.

The biases and the BatchNorm parameters take no weight decay (:func:`grassmann.optim.
param_groups`). Outputs (in ``--out``): ``training_curves.png`` (training loss and test accuracy
per epoch, mean over seeds), ``variability_vs_k.png``, ``results.json``; the markdown accuracy
table goes to stdout.

Run ``python examples/train_digits_cnn.py --help`` for the options (those of
``train_digits.py``).
"""

from __future__ import annotations

import os
import sys

from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train_digits as digits  # noqa: E402  (the sibling example)

from grassmann import EBVHead, FixedClassifierHead, GrassmannHead  # noqa: E402


def cnn_backbone() -> nn.Module:
    """The convolutional network of the module docstring: flat 64 pixels in, 64 features out."""

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        *block(1, 16),
        *block(16, 32),
        nn.MaxPool2d(2),
        *block(32, digits.FEATURE_DIM),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


#: One dimension per class for ``gcr-mixed``.
MIXED_DIMS = [2 if c % 2 == 0 else 6 for c in range(digits.NUM_CLASSES)]

HEAD_CONFIGS: list[digits.HeadConfig] = [
    digits.HeadConfig("linear", lambda d, c, s: nn.Linear(d, c), quick=True),
    digits.HeadConfig("ebv", lambda d, c, s: EBVHead(digits.ebv_vectors(c, d, s)), quick=True),
    digits.HeadConfig("fixed-random", lambda d, c, s: FixedClassifierHead(c, d, "random", seed=s)),
    digits.HeadConfig("simplex", lambda d, c, s: FixedClassifierHead(c, d, "simplex")),
    digits.HeadConfig(
        "gcr-k4",
        lambda d, c, s: GrassmannHead(d, c, 4, scale=16.0, seed=s),
        k=4,
        quick=True,
        optimizer="gcrsgd",
    ),
    digits.HeadConfig(
        "gcr-rsgd-k4", lambda d, c, s: GrassmannHead(d, c, 4, scale=16.0, seed=s), k=4
    ),
    digits.HeadConfig(
        "gcr-adamw-k4",
        lambda d, c, s: GrassmannHead(d, c, 4, scale=16.0, seed=s),
        k=4,
        optimizer="adamw+gcrsgd",
    ),
    digits.HeadConfig(
        "gcr-mixed",
        lambda d, c, s: GrassmannHead(d, c, MIXED_DIMS, scale=16.0, seed=s),
        quick=True,
        optimizer="gcrsgd",
    ),
]


def main(argv: list[str] | None = None) -> int:
    args = digits.parse_args(argv)
    if args.out == digits.DEFAULT_OUT:
        args.out = "digits_cnn_heads_out"
    return digits.run(args, HEAD_CONFIGS, cnn_backbone, "digits, CNN")


if __name__ == "__main__":
    sys.exit(main())
