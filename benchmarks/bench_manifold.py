"""Speed of the batched Grassmann maps, as a ratio to one plain SGD update of the same size.

For ``--batch`` subspaces of ``n x k`` (default 1000 of 2048 x 8, the size of a GCR head on a
ResNet-50), time ``retr`` (each retraction), ``expmap``, ``logmap``, ``transp`` (projection),
``parallel_transp`` and ``principal_angles``, and divide by the time of ``p.add_(g, alpha=-lr)``
on a Euclidean tensor of the same shape, measured in the same run (median of ``--repeats``
after a warm-up). The batch is processed by single batched calls, never by a Python loop.

``--layout col`` stores every ``n x k`` matrix column-major (its transpose contiguous), the
layout of :class:`grassmann.heads.GrassmannHead`; ``row`` (default) is a contiguous
``(batch, n, k)`` tensor.

Run: ``python benchmarks/bench_manifold.py [--device cuda] [--repeats 10] [--dtype float32]
[--layout col] [--threads 1]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from _timing import median_time

from grassmann import Grassmann, principal_angles


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--layout", default="row", choices=["row", "col"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (args.batch, args.n, args.k)
    man = Grassmann(check=False)
    x = man.random(shape, dtype=dtype, device=device, generator=gen)
    y = man.random(shape, dtype=dtype, device=device, generator=gen)
    u = man.proju(x, 0.1 * torch.randn(shape, dtype=dtype, device=device, generator=gen))
    v = man.proju(x, torch.randn(shape, dtype=dtype, device=device, generator=gen))
    p = torch.randn(shape, dtype=dtype, device=device, generator=gen)
    g = torch.randn(shape, dtype=dtype, device=device, generator=gen)
    if args.layout == "col":
        x, y, u, v, p, g = (t.mT.contiguous().mT for t in (x, y, u, v, p, g))

    qr, polar, exact = (Grassmann(retraction=r, check=False) for r in ("qr", "polar", "expmap"))
    cases: list[tuple[str, Callable[[], object]]] = [
        ("SGD update p.add_(g, alpha=-lr) (baseline)", lambda: p.add_(g, alpha=-1e-3)),
        ("egrad2rgrad (projection, one bmm + one baddbmm)", lambda: man.egrad2rgrad(x, g)),
        ("retr qr (one CholeskyQR pass on X + U)", lambda: qr.retr(x, u)),
        ("retr polar", lambda: polar.retr(x, u)),
        ("expmap", lambda: exact.expmap(x, u)),
        ("retr_transp qr (what RiemannianSGD+momentum calls)", lambda: qr.retr_transp(x, u, v)),
        ("transp (projection)", lambda: man.transp(x, y, v)),
        ("parallel_transp (EAS eq. 2.68)", lambda: man.parallel_transp(x, u, v)),
        ("logmap (BZA Alg. 5.3)", lambda: man.logmap(x, y)),
        ("principal_angles", lambda: principal_angles(x, y, validate=False)),
        ("Householder QR torch.linalg.qr (reference)", lambda: torch.linalg.qr(x + u)),
    ]
    with torch.no_grad():
        times = [(name, median_time(fn, device, args.repeats)) for name, fn in cases]
    base = times[0][1]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"{args.batch} subspaces of {args.n} x {args.k}, {args.dtype}, device {dev_name}, "
        f"{args.layout}-major, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print()
    print("| operation | time (ms) | ratio to SGD update |")
    print("|---|---:|---:|")
    for name, t in times:
        print(f"| {name} | {t * 1e3:.2f} | {t / base:.1f} |")


if __name__ == "__main__":
    main()
