"""Cost of one training step of a Grassmann head against a linear layer of the same size.

One step = forward, cross-entropy, backward, optimiser step, on a batch of 256 features:

* ``GrassmannHead(512, 1000, 8)`` (1000 class subspaces of dimension 8 in R^512, 4.1 M
  numbers) with ``geoopt.optim.RiemannianSGD`` (momentum 0.9);
* ``nn.Linear(512, 8000)`` (the same number of weights and the same matrix product size,
  ``256 x 512 x 8000``) with ``torch.optim.SGD`` (momentum 0.9) and a cross-entropy over 8000
  outputs.

Both are measured in the same run, after warm-up, as the median of ``--repeats`` steps; the
table reports the ratio GCR / linear (the target is <= 1.3 on a CPU; above 2 is a defect) and
splits the GCR step into its parts (forward + backward, the optimiser step, and within the
latter the manifold operations ``egrad2rgrad`` and ``retr_transp``) so that the dominant one
is visible.

Run: ``python benchmarks/bench_heads.py [--device cuda] [--repeats 20]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import geoopt
import torch
import torch.nn.functional as F
from torch import nn

from grassmann.heads import GrassmannHead

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

    head = GrassmannHead(n, c, k, seed=0, device=device)
    opt_gcr = geoopt.optim.RiemannianSGD(
        [{"params": head.parameters(), "weight_decay": 0.0}], lr=0.1, momentum=0.9
    )

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

    # The manifold operations of one RiemannianSGD step, on the head's own shapes and layout.
    manifold = head.subspaces.manifold
    point = head.subspaces.detach().clone()
    grad = torch.randn_like(point) * 1e-2
    rgrad = manifold.egrad2rgrad(point, grad)
    step_u = -0.1 * rgrad

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()

        return run

    clock = time.process_time if args.clock == "process" else time.perf_counter
    t, faults = median_times(
        {
            "lin": step(linear, opt_lin, y_lin),
            "gcr": step(head, opt_gcr, y_gcr),
            "lin_fb": fwd_bwd(linear, y_lin),
            "gcr_fb": fwd_bwd(head, y_gcr),
            "rgrad": no_grad(lambda: manifold.egrad2rgrad(point, grad)),
            "retr": no_grad(lambda: manifold.retr(point, step_u)),
            "retr_transp": no_grad(lambda: manifold.retr_transp(point, step_u, rgrad)),
            "flat": no_grad(lambda: point.permute(1, 0, 2).reshape(n, c * k)),
        },
        device,
        args.warmup,
        args.repeats,
        clock,
    )
    t_lin, t_gcr, t_lin_fb, t_gcr_fb = t["lin"], t["gcr"], t["lin_fb"], t["gcr_fb"]
    t_rgrad, t_retr, t_retr_transp, t_flat = t["rgrad"], t["retr"], t["retr_transp"], t["flat"]

    ms = 1e3
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(
        f"device {device} ({threads} threads), batch {b}, GrassmannHead({n}, {c}, {k}) vs "
        f"nn.Linear({n}, {c * k}); {args.clock} clock, median of {args.repeats} after "
        f"{args.warmup} warm-up rounds\n"
    )
    print("| measurement | linear (ms) | GCR (ms) | GCR / linear |")
    print("|---|---|---|---|")
    print(f"| full training step | {t_lin * ms:.2f} | {t_gcr * ms:.2f} | {t_gcr / t_lin:.2f} |")
    print(
        f"| forward + backward | {t_lin_fb * ms:.2f} | {t_gcr_fb * ms:.2f} "
        f"| {t_gcr_fb / t_lin_fb:.2f} |"
    )
    print(
        f"| optimiser step (difference) | {(t_lin - t_lin_fb) * ms:.2f} "
        f"| {(t_gcr - t_gcr_fb) * ms:.2f} | - |"
    )
    print(f"| minor page faults per step | {faults['lin']:.0f} | {faults['gcr']:.0f} | - |")
    print(f"| GCR: layout copy (C, n, k) -> (n, C k) | - | {t_flat * ms:.2f} | - |")
    print(f"| GCR: manifold.egrad2rgrad | - | {t_rgrad * ms:.2f} | - |")
    print(f"| GCR: manifold.retr | - | {t_retr * ms:.2f} | - |")
    print(f"| GCR: manifold.retr_transp | - | {t_retr_transp * ms:.2f} | - |")


if __name__ == "__main__":
    main()
