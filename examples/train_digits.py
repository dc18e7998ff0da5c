r"""Train a small MLP on scikit-learn's digits with each classification head and compare them.

The data set (1797 8x8 images of the digits 0-9, 64 features) ships with scikit-learn, so
nothing is downloaded. The split is fixed (70 % train / 30 % test, stratified, ``random_state=0``)
and the inputs are standardised with the training set's mean and standard deviation. The
backbone ``64 -> 128 -> ReLU -> 64`` is the same for every head; only the last layer changes:

* ``linear``: the usual trainable ``nn.Linear(64, 10)``;
* ``ebv``: :class:`grassmann.EBVHead` with fixed Equiangular Basis Vectors (from
  ``ebv_gen.generate`` when available, else an orthonormal set, which is the optimum for
  10 lines in ``R^64``);
* ``fixed-random`` / ``simplex``: :class:`grassmann.FixedClassifierHead`;
* ``gcr-k{1,2,4,8}``: :class:`grassmann.GrassmannHead` with ``k``-dimensional class subspaces
  (Haar-random start, trained);
* ``gcr-packed-k{1,4,8}``: the same, started from a subspace packing (10 subspaces of ``R^64``
  as far apart as possible, :func:`ebv_gen.generate_subspaces`, computed once per ``k``);
* ``gcr-fixed-k{1,4,8}``: that packing kept fixed (``trainable=False``), the subspace analogue
  of the EBV head.

Optimisers (cosine learning rate, three parameter groups from
:func:`grassmann.optim.param_groups`: weights with weight decay, biases and norms without, class
subspaces without):

* by default :class:`geoopt.optim.RiemannianSGD` (momentum 0.9) for the whole model;
* ``gcr-exact-k4``: :class:`grassmann.optim.GCRSGD`, the exact update of the GCR paper (Euclidean
  momentum buffer, projected when used, exact geodesic, sign-fixed QR every 5 steps), with
  torch's SGD for the backbone;
* ``gcr-adamw-k4``: the split of the GCR paper's transformer recipes,
  :class:`torch.optim.AdamW` for the backbone and GCRSGD for the subspaces (re-orthonormalised
  every step, ``lr_factor`` chosen so that they move at the SGD runs' rate), driven as one
  optimiser by :class:`grassmann.optim.CombinedOptimizer` (one scheduler for both).

Each configuration runs for every seed (the seed sets the initialisation and the batch order;
the split is fixed).

Intra-class feature variability
-------------------------------
For the test features ``f`` of a trained model, normalised to ``z = f / ||f||``, with ``mu_c``
the mean of ``z`` over class ``c`` and ``C`` classes,

.. math::

    V = \frac{\frac{1}{C} \sum_c \left(1 - \|\mu_c\|^2\right)}
             {1 - \left\|\frac{1}{C} \sum_c \mu_c\right\|^2} .

The numerator is the mean over classes of the average squared distance of a normalised feature
to its class mean (``E ||z - mu_c||^2 = 1 - ||mu_c||^2`` for unit ``z``), equivalently the mean
within-class cosine distance ``1 - cos`` over all pairs of the class; the denominator is the
same over all pairs of the (class-balanced) test set. ``V = 1 - R^2`` where ``R^2`` is the
"class separation" of Kornblith et al. (NeurIPS 2021), which the GCR paper (Wang et al., ICCV
2023) uses to show that the intra-class variability grows with the subspace dimension ``k``.
``V = 0``: every class collapsed to a point; ``V = 1``: classes indistinguishable.

Outputs (in ``--out``): ``training_curves.png`` (training loss and test accuracy per epoch, mean
over seeds), ``variability_vs_k.png``, ``results.json``; the markdown table goes to stdout.

Adding a head: append a :class:`HeadConfig` to :data:`HEAD_CONFIGS` (a name, a factory
``(feature_dim, num_classes, seed) -> nn.Module``, for GCR heads ``k``, and the optimiser; GCR
heads named ``<family>-k<k>`` get one curve per family in the variability plot).
``examples/train_digits_cnn.py`` runs the same comparison on a small convolutional network with
:func:`run`.

Run ``python examples/train_digits.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import geoopt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grassmann import EBVHead, FixedClassifierHead, GrassmannHead
from grassmann.optim import GCRSGD, CombinedOptimizer, param_groups, split_parameters

NUM_CLASSES = 10
DEFAULT_OUT = "digits_heads_out"
IN_FEATURES = 64
FEATURE_DIM = 64
HIDDEN = 128


# --------------------------------------------------------------------------------------------
# heads
# --------------------------------------------------------------------------------------------


def ebv_vectors(num: int, dim: int, seed: int) -> torch.Tensor:
    """Equiangular Basis Vectors from ``ebv_gen.generate`` (an orthonormal set as a fallback).

    For ``num <= dim`` the best possible coherence is 0 and ``num`` orthonormal vectors
    attain it, so the fallback is also optimal here.
    """
    try:
        from ebv_gen import generate
    except ImportError:
        generate = None
    if generate is not None:
        return torch.as_tensor(generate(num, dim, seed=seed).vectors, dtype=torch.float32)
    if num > dim:
        raise RuntimeError("ebv_gen.generate is needed for more classes than dimensions")
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, num, generator=g, dtype=torch.float64))
    return q.T.to(torch.float32)


@cache
def subspace_packing(num: int, dim: int, k: int) -> torch.Tensor:
    """``num`` ``k``-dimensional subspaces of ``R^dim`` as far apart as possible (minimum
    chordal distance), from :func:`ebv_gen.generate_subspaces`; computed once per size.

    For ``num k <= dim`` the optimum is mutually orthogonal subspaces (found at once);
    ``(10, 64, 8)`` takes a few seconds and meets the Rankin simplex bound.
    """
    from ebv_gen import generate_subspaces

    res = generate_subspaces(num, dim, k, seed=0, device="cpu")
    print(f"packing: {res.report()}", file=sys.stderr)
    return res.bases


@dataclass(frozen=True)
class HeadConfig:
    """One head to compare: ``factory(feature_dim, num_classes, seed) -> nn.Module``."""

    name: str
    factory: Callable[[int, int, int], nn.Module]
    k: int | None = None  # subspace dimension of a GCR head (for the variability plot)
    quick: bool = False  # part of the reduced --quick run
    optimizer: str = "rsgd"  # a key of OPTIMIZERS


def _gcr(k: int, family: str = "gcr", optimizer: str = "rsgd") -> HeadConfig:
    return HeadConfig(
        f"{family}-k{k}",
        lambda d, c, s: GrassmannHead(d, c, k, scale=16.0, seed=s),
        k=k,
        quick=k in (1, 4),
        optimizer=optimizer,
    )


#: GCR heads trained by the other optimisers (family name -> key of OPTIMIZERS).
_GCR_OPTIMIZER_VARIANTS = {"gcr-exact": "gcrsgd", "gcr-adamw": "adamw+gcrsgd"}


def _gcr_packed(k: int, trainable: bool) -> HeadConfig:
    """A GCR head whose subspaces start from (``trainable``) or stay at a packing."""
    return HeadConfig(
        f"gcr-{'packed' if trainable else 'fixed'}-k{k}",
        lambda d, c, s: GrassmannHead(
            d, c, k, scale=16.0, init=subspace_packing(c, d, k), trainable=trainable
        ),
        k=k,
        quick=k == 4,
    )


#: The heads compared by :func:`main`. Append here to add one.
HEAD_CONFIGS: list[HeadConfig] = [
    HeadConfig("linear", lambda d, c, s: nn.Linear(d, c), quick=True),
    HeadConfig("ebv", lambda d, c, s: EBVHead(ebv_vectors(c, d, s)), quick=True),
    HeadConfig("fixed-random", lambda d, c, s: FixedClassifierHead(c, d, "random", seed=s)),
    HeadConfig("simplex", lambda d, c, s: FixedClassifierHead(c, d, "simplex")),
    *[_gcr(k) for k in (1, 2, 4, 8)],
    *[_gcr_packed(k, trainable) for trainable in (True, False) for k in (1, 4, 8)],
    *[_gcr(4, name, optimizer) for name, optimizer in _GCR_OPTIMIZER_VARIANTS.items()],
]


def gcr_family(row: dict) -> str:
    """``"gcr-packed-k4"`` -> ``"gcr-packed"``: the curve a GCR row belongs to."""
    return row["head"].rsplit("-k", 1)[0]


# --------------------------------------------------------------------------------------------
# data, model, training
# --------------------------------------------------------------------------------------------


def load_data(device: torch.device) -> tuple[torch.Tensor, ...]:
    """The fixed, standardised digits split ``(x_train, y_train, x_test, y_test)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std[std == 0] = 1.0
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std

    def t(a, dtype):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

    return t(x_tr, torch.float32), t(y_tr, torch.long), t(x_te, torch.float32), t(y_te, torch.long)


def mlp_backbone() -> nn.Module:
    """``64 -> 128 -> ReLU -> 64``."""
    return nn.Sequential(nn.Linear(IN_FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, FEATURE_DIM))


class Net(nn.Module):
    """A backbone (default :func:`mlp_backbone`) followed by a head on its 64 features."""

    def __init__(self, head: nn.Module, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone if backbone is not None else mlp_backbone()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


#: Learning rate and weight decay of AdamW in the ``adamw+gcrsgd`` split.
ADAMW_LR = 3e-3
ADAMW_WEIGHT_DECAY = 0.05


def make_optimizer(
    model: nn.Module, kind: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The optimiser ``kind`` (a key of :data:`OPTIMIZERS`) for ``model``; ``lr`` and
    ``weight_decay`` are those of the SGD runs."""
    return OPTIMIZERS[kind](model, lr, weight_decay)


def _adamw_and_gcrsgd(model: nn.Module, lr: float, weight_decay: float) -> CombinedOptimizer:
    """AdamW for the Euclidean parameters, GCRSGD for the subspaces at ``lr`` (``lr_factor``
    turns AdamW's schedule into the SGD runs' subspace step)."""
    split = split_parameters(model)
    return CombinedOptimizer(
        torch.optim.AdamW(split.groups(ADAMW_WEIGHT_DECAY, manifold=False), lr=ADAMW_LR),
        GCRSGD(split.manifold, lr=ADAMW_LR, momentum=0.9, reorth_every=1, lr_factor=lr / ADAMW_LR),
    )


#: ``kind -> (model, lr, weight_decay) -> optimiser``.
OPTIMIZERS: dict[str, Callable[[nn.Module, float, float], torch.optim.Optimizer]] = {
    "rsgd": lambda m, lr, wd: geoopt.optim.RiemannianSGD(param_groups(m, wd), lr=lr, momentum=0.9),
    "gcrsgd": lambda m, lr, wd: GCRSGD(param_groups(m, wd), lr=lr, momentum=0.9),
    "adamw+gcrsgd": _adamw_and_gcrsgd,
}


def variability(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Intra-class variability ``V`` of the module docstring (``1 - R^2``, Kornblith et al.)."""
    z = F.normalize(features.double(), dim=1)
    means = torch.stack([z[labels == c].mean(dim=0) for c in range(num_classes)])
    within = (1.0 - means.square().sum(dim=1)).mean()
    total = 1.0 - means.mean(dim=0).square().sum()
    return float(within / total)


@dataclass
class RunResult:
    accuracy: float
    variability: float
    loss_curve: list[float] = field(default_factory=list)
    acc_curve: list[float] = field(default_factory=list)


def train_one(
    config: HeadConfig,
    seed: int,
    data: tuple[torch.Tensor, ...],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    device: torch.device,
    backbone: Callable[[], nn.Module] = mlp_backbone,
) -> tuple[RunResult, nn.Module]:
    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(seed)
    model = Net(config.factory(FEATURE_DIM, NUM_CLASSES, seed), backbone()).to(device)
    optimizer = make_optimizer(model, config.optimizer, lr, weight_decay)
    steps_per_epoch = math.ceil(len(x_tr) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    result = RunResult(accuracy=0.0, variability=0.0)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_tr), generator=g).to(device)
        total, count = 0.0, 0
        for start in range(0, len(x_tr), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
            count += len(idx)
        result.loss_curve.append(total / count)
        result.acc_curve.append(evaluate(model, x_te, y_te))
    model.eval()
    with torch.no_grad():
        feats = model.backbone(x_te)
    result.accuracy = result.acc_curve[-1]
    result.variability = variability(feats, y_te, NUM_CLASSES)
    return result, model


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(dim=1) == y).double().mean())


def head_parameter_counts(head: nn.Module) -> tuple[int, int]:
    """``(trainable parameters, fixed class-vector or subspace entries)`` of a head (floating
    buffers: not the class permutation of a mixed-dimension GrassmannHead)."""
    trainable = sum(p.numel() for p in head.parameters() if p.requires_grad)
    fixed = sum(b.numel() for b in head.buffers() if b.is_floating_point())
    return trainable, fixed


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def markdown_table(summary: list[dict]) -> str:
    lines = [
        "| head | test accuracy (%) | variability V | trainable head params | fixed head entries |",
        "|---|---|---|---|---|",
    ]
    for row in summary:
        lines.append(
            f"| {row['head']} | {100 * row['acc_mean']:.2f} ± {100 * row['acc_std']:.2f} "
            f"| {row['var_mean']:.3f} ± {row['var_std']:.3f} "
            f"| {row['trainable']} | {row['fixed']} |"
        )
    return "\n".join(lines)


def save_plots(
    summary: list[dict], runs: dict[str, list[RunResult]], out: str, title: str = "digits"
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, results in runs.items():
        loss = np.mean([r.loss_curve for r in results], axis=0)
        acc = np.mean([r.acc_curve for r in results], axis=0)
        epochs = np.arange(1, len(loss) + 1)
        ax_loss.plot(epochs, loss, label=name)
        ax_acc.plot(epochs, 100 * acc, label=name)
    ax_loss.set(xlabel="epoch", ylabel="training cross-entropy", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)")
    ax_acc.legend(fontsize=8)
    fig.suptitle(f"{title}: training curves (mean over seeds)")
    fig.tight_layout()
    paths.append(os.path.join(out, "training_curves.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    families = _gcr_families(summary)
    for family, rows in families.items():
        ax.errorbar(
            [row["k"] for row in rows],
            [row["var_mean"] for row in rows],
            yerr=[row["var_std"] for row in rows],
            marker="o",
            capsize=3,
            label=_family_label(family),
        )
    if families:
        ks = sorted({row["k"] for rows in families.values() for row in rows})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
    for i, row in enumerate(r for r in summary if r["k"] is None):
        ax.axhline(
            row["var_mean"], color=f"C{len(families) + i}", linestyle="--", label=row["head"]
        )
    ax.set(xlabel="subspace dimension k", ylabel="intra-class variability V (test)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(os.path.join(out, "variability_vs_k.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def _family_label(family: str) -> str:
    return "GCR" if family == "gcr" else family


def _gcr_families(summary: list[dict]) -> dict[str, list[dict]]:
    """GCR rows grouped by :func:`gcr_family`, each sorted by ``k``."""
    families: dict[str, list[dict]] = {}
    for row in summary:
        if row["k"] is not None:
            families.setdefault(gcr_family(row), []).append(row)
    return {name: sorted(rows, key=lambda r: r["k"]) for name, rows in families.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 40; quick 6)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3; quick 1)")
    parser.add_argument(
        "--quick", action="store_true", help="reduced run for CI: few epochs, 1 seed, some heads"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    parser.add_argument("--lr", type=float, default=0.05, help="initial learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="of the Euclidean params")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: the model is tiny)"
    )
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 6 if args.quick else 40
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if min(args.epochs, args.seeds, args.batch_size, args.threads) < 1:
        parser.error("--epochs, --seeds, --batch-size and --threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv), HEAD_CONFIGS, mlp_backbone, "digits, MLP")


def run(
    args: argparse.Namespace,
    head_configs: list[HeadConfig],
    backbone: Callable[[], nn.Module],
    title: str,
) -> int:
    """Train every configuration of ``head_configs`` (the quick ones with ``--quick``) on
    ``backbone()`` for every seed; print the table, write the plots and ``results.json``."""
    device = torch.device(args.device)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)
    data = load_data(device)
    configs = [c for c in head_configs if c.quick] if args.quick else list(head_configs)
    runs: dict[str, list[RunResult]] = {}
    summary = []
    start = time.perf_counter()
    for config in configs:
        results = []
        for seed in range(args.seeds):
            result, model = train_one(
                config,
                seed,
                data,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                weight_decay=args.weight_decay,
                device=device,
                backbone=backbone,
            )
            results.append(result)
        runs[config.name] = results
        trainable, fixed = head_parameter_counts(model.head)
        acc_mean, acc_std = _mean_std([r.accuracy for r in results])
        var_mean, var_std = _mean_std([r.variability for r in results])
        summary.append(
            {
                "head": config.name,
                "k": config.k,
                "acc_mean": acc_mean,
                "acc_std": acc_std,
                "var_mean": var_mean,
                "var_std": var_std,
                "trainable": trainable,
                "fixed": fixed,
                "accuracies": [r.accuracy for r in results],
                "variabilities": [r.variability for r in results],
            }
        )
        print(
            f"{config.name:>14}: accuracy {100 * acc_mean:.2f} ± {100 * acc_std:.2f} %, "
            f"V {var_mean:.3f} ({time.perf_counter() - start:.1f} s)",
            file=sys.stderr,
        )
    print(
        f"{title}, {args.epochs} epochs, {args.seeds} seed(s), batch {args.batch_size}, "
        f"lr {args.lr:g}, device {device}\n"
    )
    print(markdown_table(summary))
    for family, gcr in _gcr_families(summary).items():
        if len(gcr) < 2:
            continue
        vs = [row["var_mean"] for row in gcr]
        grows = all(b > a for a, b in zip(vs[:-1], vs[1:], strict=True))
        print(
            f"\n{_family_label(family)} intra-class variability against k = "
            f"{', '.join(str(r['k']) for r in gcr)}: {', '.join(f'{v:.3f}' for v in vs)} "
            f"({'grows monotonically' if grows else 'does not grow monotonically'} with k)"
        )
    paths = save_plots(summary, runs, args.out, title)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump({"args": vars(args), "summary": summary}, fh, indent=2)
    print("\nwrote " + ", ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
