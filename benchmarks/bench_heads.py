"""Cost of one training step of a Grassmann head against a linear layer of the same size.

One step = forward, cross-entropy, backward, optimiser step, on a batch of 256 features:

* ``nn.Linear(512, 8000)`` with ``torch.optim.SGD`` (momentum 0.9) and a cross-entropy over 8000
  outputs: the reference;
* ``GrassmannHead(512, 1000, 8)`` (1000 class subspaces of dimension 8 in R^512: the same number
  of weights and the same ``256 x 512 x 8000`` product) with

  - :class:`grassmann.optim.GCRSGD` (the exact GCR update, momentum 0.9; target: at most 1.3x
    the reference on a CPU),
  - ``geoopt.optim.RiemannianSGD`` (momentum 0.9, the head's QR retraction),
  - the official GCR optimiser (``RSGD`` of ``innerlee/gcr``, momentum 0.9) on the official
    head layout (an ``(C k, n)`` weight), when ``--official PATH`` names a clone of that
    repository or its ``gcr/rsgd.py``. Its code is loaded from there at run time, never copied
    into this repository; ``mmpretrain``'s registry is stubbed and, on the CPU, the
    CUDA-only ``driver=`` argument of its ``torch.linalg.svd`` call is dropped.

All steps are timed in the same run, interleaved (each round runs every step, starting one step
later than the previous round), as the median of ``--repeats`` rounds after warm-up, so that a
machine loaded by other jobs slows them alike; the load average before and after is printed.
The table reports each step over the reference step and splits the GCRSGD step into forward +
backward and the optimiser step.

Run: ``python benchmarks/bench_heads.py [--threads 1] [--repeats 20] [--official ~/gcr]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import geoopt
import torch
import torch.nn.functional as F
from torch import nn

from grassmann.heads import GrassmannHead
from grassmann.optim import GCRSGD

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing: Windows)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def median_times(
    fns: dict[str, Callable[[], object]],
    device: torch.device,
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, float], dict[str, float]]:
    """Median time (seconds) and median minor page faults of each ``fn()``, after warm-up.

    Each round runs every function twice in a row and times only the second call, so that a
    timed call always follows a call of the same function (its caches, its allocator state)
    whatever the order of the functions; the rounds interleave the functions, and each round
    starts one function later than the previous one, so that a machine whose speed drifts
    (other jobs, frequency scaling) affects all of them alike. The page faults show where
    fresh memory is taken from the operating system (the C allocator returns freed blocks of
    this size to it, and every 4 KiB page of the next one faults on first touch).
    """
    names = list(fns)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = fns[name]
            fn()
            _sync(device)
            f0, t0 = _minor_faults(), clock()
            fn()
            _sync(device)
            times[name].append(clock() - t0)
            faults[name].append(_minor_faults() - f0)
    return (
        {name: statistics.median(ts) for name, ts in times.items()},
        {name: statistics.median(fs) for name, fs in faults.items()},
    )


class _OfficialLayoutHead(nn.Module):
    """The official GCR head's layout: class ``i``'s basis is rows ``i k .. i k + k - 1`` of an
    ``(C k, n)`` weight tagged with ``.geometry = [k] * C`` (what its optimiser looks for)."""

    def __init__(self, bases: torch.Tensor, scale: float) -> None:
        super().__init__()
        c, n, k = bases.shape
        self.weight = nn.Parameter(bases.permute(0, 2, 1).reshape(c * k, n).contiguous())
        self.weight.geometry = [k] * c
        self.shape, self.scale = (c, k), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = F.normalize(x, dim=-1) @ self.weight.T
        return self.scale * proj.view(-1, *self.shape).norm(dim=-1)


def load_official_rsgd(path: str) -> type[torch.optim.Optimizer]:
    """The ``RSGD`` class of a local copy of ``innerlee/gcr`` (a clone, or ``gcr/rsgd.py``)."""
    import importlib.util
    import os
    import sys
    import types

    file = os.path.join(path, "gcr", "rsgd.py") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise SystemExit(f"--official: no gcr/rsgd.py at {path!r}")
    registry = types.ModuleType("mmpretrain.registry")
    registry.OPTIMIZERS = types.SimpleNamespace(register_module=lambda *a, **k: lambda cls: cls)
    sys.modules.setdefault("mmpretrain", types.ModuleType("mmpretrain"))
    sys.modules.setdefault("mmpretrain.registry", registry)
    spec = importlib.util.spec_from_file_location("official_gcr_rsgd", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class _Linalg:
        def __getattr__(self, name):
            return getattr(torch.linalg, name)

        @staticmethod
        def svd(a, full_matrices=True, driver=None):
            # driver= exists for CUDA inputs only
            driver = driver if a.device.type == "cuda" else None
            return torch.linalg.svd(a, full_matrices=full_matrices, driver=driver)

    class _Torch:
        linalg = _Linalg()

        def __getattr__(self, name):
            return getattr(torch, name)

    module.torch = _Torch()
    return module.RSGD


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--official",
        default=None,
        metavar="PATH",
        help="a clone of github.com/innerlee/gcr (or its gcr/rsgd.py): time its optimiser too",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "process"),
        default="wall",
        help="wall time, or CPU time of this process (steadier on a shared machine with "
        "--threads 1; CPU only)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n, c, k, b = args.features, args.classes, args.k, args.batch
    torch.manual_seed(0)

    x = torch.randn(b, n, device=device)
    y_gcr = torch.randint(0, c, (b,), device=device)
    y_lin = torch.randint(0, c * k, (b,), device=device)

    linear = nn.Linear(n, c * k, device=device)
    opt_lin = torch.optim.SGD(linear.parameters(), lr=0.1, momentum=0.9)
    head_gcr = GrassmannHead(n, c, k, seed=0, device=device)
    opt_gcr = GCRSGD(head_gcr.parameters(), lr=0.1, momentum=0.9)
    head_rsgd = GrassmannHead(n, c, k, seed=0, device=device)
    opt_rsgd = geoopt.optim.RiemannianSGD(head_rsgd.parameters(), lr=0.1, momentum=0.9)

    def step(model, opt, labels):
        def run():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), labels).backward()
            opt.step()

        return run

    def fwd_bwd(model, labels):
        def run():
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), labels).backward()

        return run

    fns = {
        "lin": step(linear, opt_lin, y_lin),
        "gcrsgd": step(head_gcr, opt_gcr, y_gcr),
        "rsgd": step(head_rsgd, opt_rsgd, y_gcr),
        "lin_fb": fwd_bwd(linear, y_lin),
        "gcr_fb": fwd_bwd(head_gcr, y_gcr),
    }
    if args.official is not None:
        official = _OfficialLayoutHead(head_gcr.subspaces.detach().clone(), 25.0).to(device)
        opt_official = load_official_rsgd(args.official)(
            [official.weight], lr=0.1, momentum=0.9, reorth_step=5
        )
        fns["official"] = step(official, opt_official, y_gcr)

    clock = time.process_time if args.clock == "process" else time.perf_counter
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    t, faults = median_times(fns, device, args.warmup, args.repeats, clock)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    ms = 1e3
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    load = (
        f"; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"({os.cpu_count()} CPUs)"
        if load_before is not None
        else ""
    )
    print(
        f"device {device} ({threads} threads), batch {b}, GrassmannHead({n}, {c}, {k}) vs "
        f"nn.Linear({n}, {c * k}); {args.clock} clock, median of {args.repeats} interleaved "
        f"rounds after {args.warmup} warm-up rounds{load}\n"
    )
    print("| training step (forward, backward, optimiser) | ms | / linear + SGD |")
    print("|---|---|---|")
    rows = [
        ("nn.Linear + torch.optim.SGD", "lin"),
        ("GrassmannHead + grassmann.optim.GCRSGD", "gcrsgd"),
        ("GrassmannHead + geoopt RiemannianSGD", "rsgd"),
        ("official GCR head layout + official RSGD", "official"),
    ]
    for label, key in rows:
        if key in t:
            print(f"| {label} | {t[key] * ms:.2f} | {t[key] / t['lin']:.2f} |")
        else:
            print(f"| {label} | not run (pass --official PATH to a clone of innerlee/gcr) | - |")
    print("\n| part | linear (ms) | GCR + GCRSGD (ms) | GCR / linear |")
    print("|---|---|---|---|")
    print(
        f"| forward + backward | {t['lin_fb'] * ms:.2f} | {t['gcr_fb'] * ms:.2f} "
        f"| {t['gcr_fb'] / t['lin_fb']:.2f} |"
    )
    print(
        f"| optimiser step (difference) | {(t['lin'] - t['lin_fb']) * ms:.2f} "
        f"| {(t['gcrsgd'] - t['gcr_fb']) * ms:.2f} | - |"
    )
    print(f"| minor page faults per step | {faults['lin']:.0f} | {faults['gcrsgd']:.0f} | - |")


if __name__ == "__main__":
    main()
