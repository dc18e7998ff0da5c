"""Binary sequence families: the sequences themselves, their exact coherence, the theory of
their ranks (exhaustive Walsh spectra), and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grassmann import coherence, dual_bch, gold, kasami
from grassmann._finite_fields import gf2_log_tables, primitive_polynomial_gf2
from grassmann.sequences import trace_code

BUILDERS = {
    "gold": lambda m, num, ext: gold(m, num, extended=ext),
    "kasami_small": lambda m, num, ext: kasami(m, num, extended=ext),
    "kasami_large": lambda m, num, ext: kasami(m, num, large=True, extended=ext),
    "dual_bch": lambda m, num, ext: dual_bch(m, num, extended=ext),
}


def _m_sequence(m: int) -> np.ndarray:
    """An m-sequence from the linear recurrence of the primitive polynomial (an LFSR), not
    from the trace tables the package uses."""
    poly = primitive_polynomial_gf2(m)
    taps = [(poly >> i) & 1 for i in range(m)]  # x^m = sum taps_i x^i
    n = (1 << m) - 1
    s = [1] + [0] * (m - 1)
    while len(s) < n:
        s.append(sum(t * s[-m + i] for i, t in enumerate(taps)) % 2)
    return np.array(s, dtype=np.int64)


def _rows_as_bits(frame: torch.Tensor) -> set[bytes]:
    return {bytes(r) for r in (frame.numpy() < 0).astype(np.uint8)}


def _shifts(seq: np.ndarray) -> set[bytes]:
    return {bytes(np.roll(seq, -k).astype(np.uint8)) for k in range(len(seq))}


@pytest.mark.parametrize("m", [3, 5])
def test_gold_frame_is_the_preferred_pair_family_with_all_shifts(m):
    # Gold (1968): u an m-sequence, v = u decimated by 3; the family u, v, u + T^k v, shifted
    n = (1 << m) - 1
    u = _m_sequence(m)
    v = u[(3 * np.arange(n)) % n]
    want = _shifts(u) | _shifts(v) | {bytes(np.zeros(n, np.uint8))}
    for k in range(n):
        want |= _shifts(u ^ np.roll(v, -k))
    frame = gold(m)
    assert frame.shape == (1 << (2 * m), n)
    assert len(want) == 1 << (2 * m)  # 2^m + 1 sequences of period n, and the all-ones one
    assert _rows_as_bits(frame) == want


@pytest.mark.parametrize("m", [4, 6])
def test_small_kasami_frame_is_u_plus_shifts_of_the_decimated_sequence(m):
    n, q = (1 << m) - 1, 1 << (m // 2)
    u = _m_sequence(m)
    w = u[((q + 1) * np.arange(n)) % n]  # period q - 1
    want = _shifts(u) | _shifts(w) | {bytes(np.zeros(n, np.uint8))}
    for k in range(q - 1):
        want |= _shifts(u ^ np.roll(w, -k))
    assert _rows_as_bits(kasami(m)) == want


def test_trace_tables_are_the_m_sequence_of_the_primitive_polynomial():
    for m in (3, 6, 9, 10):
        antilog, trace = gf2_log_tables(m)
        assert len(set(antilog.tolist())) == (1 << m) - 1  # alpha is primitive
        s = _m_sequence(m)
        # the trace sequence satisfies the same recurrence: it is one of the n shifts of s
        assert bytes(trace.astype(np.uint8)) in _shifts(s)


def _walsh_max(bits: np.ndarray, m: int) -> np.ndarray:
    """max_b |sum_x (-1)^(f(x) + b.x)| by a dense Hadamard product (independent of the
    package's fast transform): rows are forms on the punctured coordinates, f(0) = 0."""
    antilog = gf2_log_tables(m)[0]
    vals = np.ones((len(bits), 1 << m))
    vals[:, antilog] = 1.0 - 2.0 * bits
    x = np.arange(1 << m)
    both = x[:, None] & x[None, :]
    parity = sum((both >> i) & 1 for i in range(m)) % 2
    had = 1.0 - 2.0 * parity
    return np.abs(vals @ had).max(axis=1)


@pytest.mark.parametrize(
    ("family", "m"),
    [("gold", 3), ("gold", 5), ("gold", 7), ("kasami_small", 4), ("kasami_small", 8)]
    + [("kasami_large", 4), ("kasami_large", 6), ("dual_bch", 5)],
)
def test_least_rank_of_every_level_matches_the_theory(family, m):
    # the coherence of every level rests on the least rank of the non-zero forms it spans:
    # max |W| = 2^(m - r/2); checked here over all forms, one row of class c at b = 0
    code = trace_code(family, m)
    frame = BUILDERS[family](m, code.size, False)
    heads = (frame[:: 1 << m].numpy() < 0).astype(np.float64)  # (classes, n): the forms
    peaks = _walsh_max(heads, m)
    assert peaks[0] == 1 << m  # the zero form
    for level, rank in enumerate(code.ranks, start=1):
        assert peaks[1 : code.classes(level)].max() == 1 << (m - rank // 2)


def _gf2_rank(rows: np.ndarray) -> np.ndarray:
    """Ranks over GF(2) of a batch of ``m x m`` matrices, rows as bit masks: ``(B, m)``."""
    rows = rows.copy()
    idx = np.arange(len(rows))
    rank = np.zeros(len(rows), dtype=np.int64)
    for bit in range(rows.shape[1]):
        has_bit = (rows >> bit) & 1 == 1
        found = has_bit.any(axis=1)
        pivot = np.argmax(has_bit, axis=1)
        prow = rows[idx, pivot]
        has_bit[idx, pivot] = False
        rows = np.where(has_bit & found[:, None], rows ^ prow[:, None], rows)
        rows[idx[found], pivot[found]] = 0
        rank += found
    return rank


def _alternating_forms(m: int, components) -> np.ndarray:
    """The alternating forms ``B(x, y) = Q(x + y) + Q(x) + Q(y)`` of all ``Q = sum_j
    Tr_1^{k_j}(c_j x^{e_j})``, as ``(2^(sum k_j), m)`` bit-mask rows in the polynomial basis
    (``c`` in the order of its bits over the GF(2)-bases ``beta_j^i``). Field arithmetic from a
    shift register of the primitive polynomial, independent of the package's tables."""
    n = (1 << m) - 1
    poly = primitive_polynomial_gf2(m)
    exp = np.empty(n, dtype=np.int64)
    v = 1
    for t in range(n):
        exp[t] = v
        v = (v << 1) ^ (poly if v >> (m - 1) & 1 else 0)
    log = np.zeros(1 << m, dtype=np.int64)
    log[exp] = np.arange(n)

    def mul(a, b):
        return np.where((a == 0) | (b == 0), 0, exp[(log[a] + log[b]) % n])

    basis = 1 << np.arange(m)
    points = np.concatenate([basis, (basis[:, None] ^ basis[None, :]).ravel()])
    forms = np.zeros((1, m), dtype=np.int64)
    for e, k in components:
        xe = np.where(points == 0, 0, exp[(log[points] * e) % n])
        for i in range(k):  # c = beta^i, beta = alpha^(n / (2^k - 1)) primitive in GF(2^k)
            y = mul(np.full_like(xe, exp[(i * (n // ((1 << k) - 1))) % n]), xe)
            q = np.zeros_like(y)
            for _ in range(k):  # Tr_1^k(y) = y + y^2 + ... + y^(2^(k-1)), in GF(2)
                q ^= y
                y = mul(y, y)
            assert set(np.unique(q)) <= {0, 1}
            b = q[m:].reshape(m, m) ^ q[:m, None] ^ q[None, :m]
            new = (b << np.arange(m)).sum(axis=1)
            forms = np.concatenate([forms, forms ^ new])
    return forms


@pytest.mark.parametrize(
    ("family", "m"),
    [("gold", 9), ("kasami_small", 10), ("kasami_large", 8), ("kasami_large", 10)]
    + [("dual_bch", 7)],
)
def test_least_rank_of_every_level_from_the_alternating_forms(family, m):
    # the ranks of the theory, by GF(2) elimination on every alternating form of the family
    # (2^15 of them for the large Kasami set, m = 10), for sizes whose frames are too large to
    # build: m = 8 and 10 are the large Kasami sets for m = 0 and 2 (mod 4)
    code = trace_code(family, m)
    ranks = _gf2_rank(_alternating_forms(m, code.components))
    assert ranks[0] == 0 and len(ranks) == code.classes()
    assert np.all(ranks[1:] % 2 == 0) and ranks[1:].min() == code.ranks[-1]
    for level, rank in enumerate(code.ranks, start=1):
        assert ranks[1 : code.classes(level)].min() == rank


def _prefixes(code, extended):
    per = 1 << code.m
    sizes = {2, per, per + 1, code.size}
    for level in range(1, len(code.ranks)):
        sizes |= {code.classes(level) * per, code.classes(level) * per + 1}
    return sorted(s for s in sizes if s <= code.size)


@pytest.mark.parametrize(
    ("family", "m"),
    [("gold", 3), ("gold", 5), ("kasami_small", 4), ("kasami_small", 6)]
    + [("kasami_large", 4), ("dual_bch", 5)],
)
@pytest.mark.parametrize("extended", [False, True], ids=["punctured", "extended"])
def test_every_prefix_has_exactly_the_stated_coherence(family, m, extended):
    code = trace_code(family, m)
    num = min(code.size, 4096)
    frame = BUILDERS[family](m, num, extended)
    assert frame.shape == (num, code.dim(extended)) and frame.dtype == torch.float64
    assert torch.allclose(frame.norm(dim=1), torch.ones(num, dtype=torch.float64))
    for k in _prefixes(code, extended):
        if k > num:
            continue
        assert abs(coherence(frame[:k]) - code.coherence(k, extended)) <= 1e-12
        signed = coherence(frame[:k], mode="sphere")
        assert abs(signed - code.coherence(k, extended, signed=True)) <= 1e-12


def test_large_kasami_m6_coherence_from_one_row_and_linearity():
    # 32,768 lines in R^63: the code is linear, so the inner products with the all-ones row
    # (class 0, b = 0) are all the values that occur; check them and the linearity itself
    code = trace_code("kasami_large", 6)
    frame = kasami(6, large=True)
    n = 63
    values = (frame @ frame[0])[1:] * n
    assert torch.allclose(values, values.round())
    assert abs(values.abs().max().item() / n - code.coherence(code.size)) < 1e-12
    assert abs(values.max().item() / n - code.coherence(code.size, signed=True)) < 1e-12
    bits = frame.numpy() < 0
    index = {bytes(r): i for i, r in enumerate(bits.astype(np.uint8))}
    rng = np.random.default_rng(0)
    for i, j in rng.integers(0, len(bits), size=(200, 2)):
        assert bytes((bits[i] ^ bits[j]).astype(np.uint8)) in index
    # the first 2^(3m/2) rows are the small Kasami set (bent forms): (2^3 + 1)/63
    assert abs(coherence(frame[:512]) - 9 / 63) < 1e-12


@pytest.mark.slow
def test_gold_m7_full_family_tiled_coherence():
    # 16,384 lines in R^127 at 17/127 and R^128 at 1/8, float64 tiled (about 2 s each)
    for extended, mu in ((False, 17 / 127), (True, 1 / 8)):
        frame = gold(7, extended=extended)
        assert frame.shape == (16384, 127 + extended)
        assert abs(coherence(frame, chunk_size=2048) - mu) <= 1e-12


def test_theory_values_of_the_issue_sizes():
    assert trace_code("gold", 9).coherence(262_143) == 33 / 511
    assert trace_code("gold", 9).coherence(100_000, extended=True) == 1 / 16
    assert trace_code("kasami_small", 10).coherence(32_736) == 33 / 1023
    assert trace_code("kasami_small", 10).size == 32_768
    assert trace_code("kasami_large", 10).coherence(1_000_000, extended=True) == 1 / 16
    assert trace_code("dual_bch", 9).coherence(2**18 + 1) == 65 / 511


def test_dtype_device_and_subsets(device):
    frame = gold(5, 100, dtype=torch.float32, device=device)
    assert frame.shape == (100, 31) and frame.dtype == torch.float32
    assert frame.device.type == device.type
    full = gold(5)
    assert torch.equal(frame.cpu().double(), full[:100].float().double())
    assert abs(coherence(frame) - 9 / 31) < 1e-6
    assert math.isclose(frame.abs().max().item(), 1 / math.sqrt(31), rel_tol=1e-6)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="Gold family needs an odd m >= 3, got m=4"):
        gold(4)
    with pytest.raises(ValueError, match="Kasami sets need an even m >= 4, got m=5"):
        kasami(5)
    with pytest.raises(ValueError, match="dual BCH family .* odd m >= 5, got m=3"):
        dual_bch(3)
    with pytest.raises(ValueError, match="num=1025 exceeds the gold family of m=5: at most 1024"):
        gold(5, 1025)
    with pytest.raises(ValueError, match="num must be >= 1"):
        gold(5, 0)
    with pytest.raises(TypeError, match="m must be an integer"):
        gold(5.0)
    with pytest.raises(TypeError, match="dtype must be a real floating dtype.*torch.int32"):
        gold(5, 10, dtype=torch.int32)
    with pytest.raises(ValueError, match="family must be one of"):
        trace_code("bent", 6)
    with pytest.raises(ValueError, match="num must be <= 1024"):
        trace_code("gold", 5).coherence(1025)
