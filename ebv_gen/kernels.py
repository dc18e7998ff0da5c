"""Tile kernels of the generator: the maximum similarity, the near-maximal pairs, and the
log-sum-exp surrogate with its gradient, streamed over the tiles of :mod:`grassmann.tiles`.

A packing is ``N`` points, each a block of ``k`` orthonormal rows in ``R^d``, stored flat as
``Z`` of shape ``(R, N k, d)`` (``R`` packings side by side). The similarity of two points is

* lines mode: ``s_ij = ||Z_i Z_j^T||_F^2`` (``cos^2`` for ``k = 1``; for ``k > 1`` it is
  ``k - d_c^2``, the chordal distance of Conway, Hardin and Sloane 1996),
* sphere mode (``k = 1`` only): ``s_ij = <z_i, z_j>`` (signed).

The Gram matrix is never materialised: memory is ``O(R N k d + R tile^2)``, and there is no
host synchronisation inside the tile loops (:func:`near_max_pairs`, which serves the finish,
excepted). Every kernel takes the tiles to walk (default: all of :func:`grassmann.upper_tiles`),
so that the ranks of a process group can each walk their share, and a ``poll`` callable checked
between tiles: when it returns True the kernel raises :class:`Stopped`, so a stop request is
honoured within one tile whatever the size of the problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from grassmann.tiles import Tile, upper_tiles

__all__ = [
    "DEFAULT_TILE",
    "MODES",
    "Stopped",
    "poll_stop",
    "max_similarity",
    "near_max_pairs",
    "surrogate_finish",
    "surrogate_grad",
    "surrogate_parts",
    "tiles_for",
]

MODES = ("lines", "sphere")

#: Default tile edge (rows of ``Z``); the working memory is a few ``R * tile^2`` buffers.
DEFAULT_TILE = 2048

#: Exponents are clamped from below here before ``exp``: underflow to subnormals/zero is ~10x
#: slower on CPUs, and with the maximum's exponent >= -20 (the optimiser's window) a term below
#: ``exp(-80)`` weighs less than ``1e-26`` relative, ``1e-14`` even summed over 10^12 pairs.
_EXP_FLOOR = {torch.float32: -80.0, torch.float64: -700.0}


#: Whether batches of at least ``_TRANSPOSED_BATCH`` packings on a CPU sum the surrogate's
#: gradient transposed (see :func:`surrogate_parts`; the transpose back costs more than it
#: saves for a few packings: 3 of 60 points in R^6, 0.57 against 0.50 ms per step).
_TRANSPOSED_GRADIENT = True
_TRANSPOSED_BATCH = 16


class Stopped(Exception):
    """Raised by a kernel between two tiles when its ``poll`` asks to stop."""


def tiles_for(num: int, tile: int, block: int = 1) -> list[Tile]:
    """All tiles of ``num`` points for a tile edge of ``tile`` rows (``tile // block`` points)."""
    return upper_tiles(num, max(1, tile // block))


def poll_stop(poll: Callable[[], bool] | None) -> None:
    """Raise :class:`Stopped` when ``poll`` is given and returns True (checked between tiles)."""
    if poll is not None and poll():
        raise Stopped


def _pool(sq: torch.Tensor, block: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Sum ``k x k`` blocks of a ``(R, a k, b k)`` tile -> ``(R, a, b)`` (into ``out`` if given).

    The ``k`` rows of each block are added first (contiguous slices), then the ``k`` columns:
    ``k - 1`` additions each way. ``torch.sum`` over the two strided block axes is 10-16x
    slower on CPUs (measured at ``R = 256``, ``a = b = 60``, ``k = 2``)."""
    if block == 1:
        return sq if out is None else out.copy_(sq)
    r, A, B = sq.shape
    v = sq.view(r, A // block, block, B)
    rows = v[:, :, 0] + v[:, :, 1]
    for i in range(2, block):
        rows += v[:, :, i]
    x = rows.view(r, A // block, B // block, block)
    out = torch.add(x[..., 0], x[..., 1], out=out)
    for i in range(2, block):
        out += x[..., i]
    return out


def _similarities(G: torch.Tensor, block: int, mode: str, diagonal: bool) -> torch.Tensor:
    """Pooled similarities of a Gram tile, with the self-pairs of a diagonal tile at ``-inf``."""
    s = G * G if mode == "lines" else G.clone()
    s = _pool(s, block)
    if diagonal:
        s.diagonal(dim1=1, dim2=2).fill_(-math.inf)
    return s


def max_similarity(
    Z: torch.Tensor,
    *,
    block: int = 1,
    mode: str = "lines",
    tile: int = DEFAULT_TILE,
    tiles: Sequence[Tile] | None = None,
    poll: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Largest off-diagonal similarity of each packing in ``Z`` (shape ``(R,)``), streamed.

    ``Z`` is ``(N k, d)`` or ``(R, N k, d)``; no host synchronisation happens inside. For
    ``N = 1`` (or an empty ``tiles``) the result is ``-inf``.
    """
    batched = Z.ndim == 3
    Zb = Z if batched else Z.unsqueeze(0)
    n = Zb.shape[1] // block
    out = torch.full((Zb.shape[0],), -math.inf, dtype=Zb.dtype, device=Zb.device)
    for t in tiles_for(n, tile, block) if tiles is None else tiles:
        poll_stop(poll)
        ZI = Zb[:, t.i0 * block : t.i1 * block]
        ZJ = Zb[:, t.j0 * block : t.j1 * block]
        s = _similarities(torch.bmm(ZI, ZJ.transpose(1, 2)), block, mode, t.diagonal)
        out = torch.maximum(out, s.amax(dim=(1, 2)))
    return out if batched else out[0]


def near_max_pairs(
    Z: torch.Tensor,
    margin: float,
    *,
    block: int = 1,
    mode: str = "lines",
    tile: int = DEFAULT_TILE,
    limit: int | None = None,
    poll: Callable[[], bool] | None = None,
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pairs of points whose similarity is within ``margin`` of the largest, streamed.

    ``Z`` is one packing ``(N k, d)``. Returns ``(smax, i, j, s)``: the largest off-diagonal
    similarity (a float) and the point indices ``i < j`` and similarities ``s`` of every pair
    with ``s >= smax - margin`` (in no particular order). With ``limit`` at most that many of
    the largest such pairs are kept, so memory stays ``O(limit + tile^2)`` whatever the margin.
    One host synchronisation per tile (this serves the finish, not the optimiser's steps).
    """
    n = Z.shape[0] // block
    run_max = -math.inf
    kept_i: list[torch.Tensor] = []
    kept_j: list[torch.Tensor] = []
    kept_s: list[torch.Tensor] = []
    count = 0
    for t in tiles_for(n, tile, block):
        poll_stop(poll)
        ZI = Z[t.i0 * block : t.i1 * block]
        ZJ = Z[t.j0 * block : t.j1 * block]
        s = _similarities((ZI @ ZJ.T).unsqueeze(0), block, mode, t.diagonal)[0]
        if t.diagonal:  # the lower triangle of a diagonal tile repeats the upper one
            # (a comparison of aranges: tril/triu are far slower on small tiles, where
            # torch hands them to its thread pool)
            r = torch.arange(s.shape[0], device=s.device)
            s = s.masked_fill(r[:, None] >= r[None, :], -math.inf)
        run_max = max(run_max, float(s.max()))
        ii, jj = torch.nonzero(s >= run_max - margin, as_tuple=True)
        kept_i.append(ii + t.i0)
        kept_j.append(jj + t.j0)
        kept_s.append(s[ii, jj])
        count += ii.numel()
        if limit is not None and count > 2 * limit:
            kept_i, kept_j, kept_s, count = _keep_largest(kept_i, kept_j, kept_s, limit)
    i = torch.cat(kept_i)
    j = torch.cat(kept_j)
    s = torch.cat(kept_s)
    keep = s >= run_max - margin
    i, j, s = i[keep], j[keep], s[keep]
    if limit is not None and s.numel() > limit:
        (i,), (j,), (s,), _ = _keep_largest([i], [j], [s], limit)
    return run_max, i, j, s


def _keep_largest(
    i: list[torch.Tensor], j: list[torch.Tensor], s: list[torch.Tensor], limit: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], int]:
    """The ``limit`` pairs of largest similarity among the collected ones."""
    ic, jc, sc = torch.cat(i), torch.cat(j), torch.cat(s)
    top = torch.topk(sc, min(limit, sc.numel())).indices
    return [ic[top]], [jc[top]], [sc[top]], int(top.numel())


def _buffer(workspace: dict[str, torch.Tensor], name: str, numel: int, like: torch.Tensor):
    """A flat buffer of at least ``numel`` elements, kept in ``workspace`` across calls."""
    buf = workspace.get(name)
    if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
        buf = torch.empty(numel, dtype=like.dtype, device=like.device)
        workspace[name] = buf
    return buf


def _view(buf: torch.Tensor, *shape: int) -> torch.Tensor:
    """The first ``prod(shape)`` elements of a flat buffer, as a contiguous tensor."""
    return buf[: math.prod(shape)].view(*shape)


def surrogate_parts(
    Z: torch.Tensor,
    t: torch.Tensor,
    shift: torch.Tensor,
    *,
    block: int = 1,
    mode: str = "lines",
    tile: int = DEFAULT_TILE,
    tiles: Sequence[Tile] | None = None,
    workspace: dict[str, torch.Tensor] | None = None,
    poll: Callable[[], bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sums behind :func:`surrogate_grad` over ``tiles`` (default: all of them).

    Returns ``(total, emax, wgrad)``: ``total = sum exp(x_ij)`` and ``emax = max x_ij`` over the
    pairs of the tiles, with ``x_ij = t (s_ij - shift)`` (exponents clamped from below), and
    ``wgrad = sum exp(x_ij) ds_ij/dZ`` up to the factor ``c`` (see :func:`surrogate_grad`), all
    unnormalised: sums over disjoint sets of tiles add up (``emax`` by maximum), which is how
    the ranks of a process group combine their shares.
    """
    R, M, d = Z.shape
    n = M // block
    lines = mode == "lines"
    ws: dict[str, torch.Tensor] = workspace if workspace is not None else {}
    work = tiles_for(n, tile, block) if tiles is None else tiles
    # the gradient is summed transposed, (R, d, N k), for batches on a CPU: there a batched
    # product with few output columns, ``A_IJ Z_J`` with ``d`` of them, is 3-6x slower than
    # the same product transposed, ``Z_J^T A_IJ^T`` with ``b k`` columns (R = 185 packings of
    # 60 points in R^6: 680 against 110 us), and whole steps up to 1.5x faster
    # (``benchmarks/bench_steps.py --batches``)
    transposed = _TRANSPOSED_GRADIENT and R >= _TRANSPOSED_BATCH and Z.device.type == "cpu"
    total = torch.zeros(R, dtype=Z.dtype, device=Z.device)
    emax = torch.full((R,), -math.inf, dtype=Z.dtype, device=Z.device)
    if not work:
        return total, emax, torch.zeros_like(Z)
    grad = Z.new_zeros(R, d, M) if transposed else torch.zeros_like(Z)
    floor = _EXP_FLOOR.get(Z.dtype, -80.0)
    c = t.sqrt() if lines else t
    Zs = _view(_buffer(ws, "Zs", Z.numel(), Z), R, M, d)
    torch.mul(Z, c.view(R, 1, 1), out=Zs)
    neg_tm = (-(t * shift)).view(R, 1, 1)
    area = max(tl.area for tl in work)
    hbuf = _buffer(ws, "H", R * area * block * block, Z)
    ebuf = _buffer(ws, "E", R * area, Z) if lines else hbuf
    sqbuf = _buffer(ws, "S", R * area * block * block, Z) if lines and block > 1 else hbuf
    for tl in work:
        poll_stop(poll)
        a, b = tl.i1 - tl.i0, tl.j1 - tl.j0
        rows_i = slice(tl.i0 * block, tl.i1 * block)
        rows_j = slice(tl.j0 * block, tl.j1 * block)
        ZI, ZJ = Z[:, rows_i], Z[:, rows_j]
        H = _view(hbuf, R, a * block, b * block)
        torch.bmm(Zs[:, rows_i], ZJ.transpose(1, 2), out=H)
        if not lines:
            E = H.add_(neg_tm)  # t (s - shift), in place: the weights are e alone
        elif block == 1:
            E = torch.addcmul(neg_tm, H, H, out=_view(ebuf, R, a, b))
        else:
            sq = torch.mul(H, H, out=_view(sqbuf, R, a * block, b * block))
            E = _view(ebuf, R, a, b)
            _pool(sq, block, out=E)
            E.add_(neg_tm)
        if tl.diagonal:
            E.diagonal(dim1=1, dim2=2).fill_(-math.inf)
        emax = torch.maximum(emax, E.amax(dim=(1, 2)))
        E.clamp_(min=floor).exp_()
        if tl.diagonal:
            E.diagonal(dim1=1, dim2=2).zero_()
        part = E.sum(dim=(1, 2))
        total += part * 0.5 if tl.diagonal else part
        if not lines:
            A = E
        elif block == 1:
            A = H.mul_(E)
        else:
            A = H.view(R, a, block, b, block).mul_(E.view(R, a, 1, b, 1))
            A = A.view(R, a * block, b * block)
        if transposed:
            grad[:, :, rows_i].baddbmm_(ZJ.transpose(1, 2), A.transpose(1, 2))
            if not tl.diagonal:
                grad[:, :, rows_j].baddbmm_(ZI.transpose(1, 2), A)
        else:
            grad[:, rows_i].baddbmm_(A, ZJ)
            if not tl.diagonal:
                grad[:, rows_j].baddbmm_(A.transpose(1, 2), ZI)
    return total, emax, grad.transpose(1, 2).contiguous() if transposed else grad


def surrogate_finish(
    total: torch.Tensor,
    emax: torch.Tensor,
    grad: torch.Tensor,
    t: torch.Tensor,
    shift: torch.Tensor,
    mode: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(value, grad, smax)`` of :func:`surrogate_grad` from the sums of
    :func:`surrogate_parts` (``grad`` is scaled in place)."""
    lines = mode == "lines"
    c = t.sqrt() if lines else t
    scale = 2.0 / (c * total) if lines else 1.0 / total
    grad.mul_(scale.view(-1, 1, 1))
    return shift + torch.log(total) / t, grad, shift + emax / t


def surrogate_grad(
    Z: torch.Tensor,
    t: torch.Tensor,
    shift: torch.Tensor,
    *,
    block: int = 1,
    mode: str = "lines",
    tile: int = DEFAULT_TILE,
    workspace: dict[str, torch.Tensor] | None = None,
    poll: Callable[[], bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Log-sum-exp surrogate of the maximum similarity, its Euclidean gradient, and the maximum.

    .. math:: f_t(Z) = m + \frac{1}{t} \log \sum_{i<j} \exp(t (s_{ij} - m)),

    which satisfies ``max s <= f_t <= max s + log(#pairs) / t`` (``m`` is the ``shift``).

    Parameters
    ----------
    Z
        ``(R, N k, d)`` packings (rows of each ``k``-block orthonormal).
    t, shift
        ``(R,)`` temperatures and shifts (on ``Z``'s device and dtype).
    block
        ``k``, the number of rows per point.
    mode
        ``"lines"`` (``s = ||Z_i Z_j^T||_F^2``) or ``"sphere"`` (``s = <z_i, z_j>``, ``k = 1``).
    tile
        Tile edge in rows; the Gram matrix is streamed in tiles of :func:`tiles_for`.
    workspace
        Optional dict that keeps the tile buffers between calls, so that repeated calls (the
        optimiser's steps) allocate nothing; pass the same dict each time.
    poll
        Checked between tiles; True raises :class:`Stopped`.

    Returns
    -------
    value : torch.Tensor
        ``(R,)``: ``shift + log(sum_{i<j} exp(t (s_ij - shift))) / t``.
    grad : torch.Tensor
        ``(R, N k, d)``: the Euclidean gradient of ``value`` with respect to ``Z``.
    smax : torch.Tensor
        ``(R,)``: ``max_{i<j} s_ij`` in the working precision, read off the largest exponent
        ``x = t (s - shift)`` as ``shift + x / t``.

    Notes
    -----
    With ``p_ij = exp(t (s_ij - shift)) / S`` and ``S = sum_{i<j} exp(t (s_ij - shift))``, the
    gradient is ``dvalue/dZ_i = sum_j p_ij ds_ij/dZ_i`` where ``ds_ij/dZ_i = 2 G_ij Z_j`` (lines)
    or ``Z_j`` (sphere): for a tile ``(I, J)``, ``grad_I += A_IJ Z_J`` and
    ``grad_J += A_IJ^T Z_I``. Host sync: none.

    The left factor of each tile product is pre-scaled by ``c = sqrt(t)`` (lines) or ``c = t``
    (sphere), so the tile ``H = c G`` gives the exponents in one fused pass:
    ``t (s - shift) = H * H - t shift`` (``addcmul``; pooled over ``k x k`` blocks for
    ``k > 1``) or ``H - t shift``. The lines weights ``H * e`` carry the factor ``c``, divided
    out once at the end. Tile buffers are reused across tiles (and across calls with
    ``workspace``).
    """
    total, emax, grad = surrogate_parts(
        Z, t, shift, block=block, mode=mode, tile=tile, workspace=workspace, poll=poll
    )
    return surrogate_finish(total, emax, grad, t, shift, mode)
