"""Small finite-field helpers for the algebraic constructions (GF(p^m), GF(2^n))."""

from __future__ import annotations

import math
from functools import cache, lru_cache

import numpy as np

__all__ = [
    "field_tables",
    "gf2_field",
    "gf2_log_tables",
    "irreducible_polynomial",
    "jacobsthal_matrix",
    "primitive_polynomial_gf2",
    "prime_power",
    "subfield_trace",
]


def prime_power(q: int) -> tuple[int, int] | None:
    """``(p, m)`` with ``q = p^m``, ``p`` prime, or ``None`` when ``q`` is not a prime power."""
    if q < 2:
        return None
    p = next((f for f in range(2, math.isqrt(q) + 1) if q % f == 0), q)
    m = 0
    while q % p == 0:
        q //= p
        m += 1
    return (p, m) if q == 1 else None


def _polymod(a: list[int], g: list[int], p: int) -> list[int]:
    """Remainder of ``a`` by monic ``g`` over GF(p) (little-endian coefficient lists)."""
    a = list(a)
    dg = len(g) - 1
    for deg in range(len(a) - 1, dg - 1, -1):
        c = a[deg] % p
        if c:
            for i in range(dg + 1):
                a[deg - dg + i] = (a[deg - dg + i] - c * g[i]) % p
    return [x % p for x in a[:dg]]


def irreducible_polynomial(p: int, m: int) -> list[int]:
    """A monic irreducible polynomial of degree ``m`` over GF(p), little-endian coefficients
    (the first one in lexicographic order with no monic factor of degree ``<= m/2``)."""
    for code in range(p**m):
        f = [(code // p**i) % p for i in range(m)] + [1]
        if f[0] == 0:
            continue
        ok = True
        for j in range(1, m // 2 + 1):
            for gcode in range(p**j):
                g = [(gcode // p**i) % p for i in range(j)] + [1]
                if not any(_polymod(f, g, p)):
                    ok = False
                    break
            if not ok:
                break
        if ok:
            return f
    raise RuntimeError("no irreducible polynomial found")  # pragma: no cover


def gf2_field(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GF(2^n) in the polynomial basis ``1, x, ..., x^{n-1}``, elements as integers ``< 2^n``.

    Returns
    -------
    powers : np.ndarray
        ``(2^n, 2 n - 1)`` integers: ``powers[a, k] = a x^k`` (``k <= 2 n - 2``).
    trace : np.ndarray
        ``(2^n,)`` in {0, 1}: the absolute trace ``Tr(a) = a + a^2 + ... + a^{2^{n-1}}``.
    sqrt : np.ndarray
        ``(2^n,)``: the square root (the inverse of the Frobenius map ``a -> a^2``).
    """
    f = irreducible_polynomial(2, n)
    poly = sum(c << i for i, c in enumerate(f))
    q = 1 << n
    elems = np.arange(q, dtype=np.int64)

    def times_x(v: np.ndarray) -> np.ndarray:
        v = v << 1
        return np.where(v >> n & 1, v ^ poly, v)

    powers = np.empty((q, max(2 * n - 1, 1)), dtype=np.int64)
    powers[:, 0] = elems
    for k in range(1, powers.shape[1]):
        powers[:, k] = times_x(powers[:, k - 1])

    def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros_like(a)
        for k in range(n):
            out ^= np.where(b >> k & 1, powers[a, k], 0)
        return out

    square = mul(elems, elems)
    acc = elems.copy()
    frob = elems.copy()
    for _ in range(n - 1):
        frob = mul(frob, frob)
        acc ^= frob
    if not np.all((acc == 0) | (acc == 1)):  # pragma: no cover - a field identity
        raise RuntimeError("trace outside GF(2)")
    sqrt = np.empty(q, dtype=np.int64)
    sqrt[square] = elems
    return powers, acc, sqrt


def _gf2_mulmod(a: int, b: int, poly: int, m: int) -> int:
    """``a b`` in GF(2)[x] / (poly), elements as bit masks (``poly`` includes ``x^m``)."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        b >>= 1
        a <<= 1
        if a >> m & 1:
            a ^= poly
    return out


def _gf2_power(a: int, e: int, poly: int, m: int) -> int:
    out = 1
    while e:
        if e & 1:
            out = _gf2_mulmod(out, a, poly, m)
        a = _gf2_mulmod(a, a, poly, m)
        e >>= 1
    return out


def _prime_factors(n: int) -> list[int]:
    out, f = [], 2
    while f * f <= n:
        if n % f == 0:
            out.append(f)
            while n % f == 0:
                n //= f
        f += 1
    return out + ([n] if n > 1 else [])


@cache
def primitive_polynomial_gf2(m: int) -> int:
    """The first primitive polynomial of degree ``m`` over GF(2), as a bit mask with ``x^m``.

    ``f`` is primitive when it is irreducible and ``x`` has multiplicative order ``2^m - 1``
    modulo ``f``, i.e. ``x^((2^m - 1)/r) != 1`` for every prime ``r | 2^m - 1`` (Lidl &
    Niederreiter, *Finite Fields*, 1997, Thm. 3.16 and 3.18). Searched in increasing order of
    the bit mask; ``m >= 2``.
    """
    if m < 2:
        raise ValueError(f"m must be >= 2, got {m}")
    n = (1 << m) - 1
    rs = _prime_factors(n)
    for poly in range((1 << m) | 1, 1 << (m + 1), 2):
        if _irreducible_gf2(poly, m) and all(_gf2_power(2, n // r, poly, m) != 1 for r in rs):
            return poly
    raise RuntimeError("no primitive polynomial found")  # pragma: no cover


def _irreducible_gf2(poly: int, m: int) -> bool:
    """Rabin's test: ``x^(2^m) = x`` mod ``f`` and ``gcd(x^(2^(m/r)) - x, f) = 1`` for prime
    ``r | m``."""

    def frob(k: int) -> int:  # x^(2^k) mod f
        a = 2
        for _ in range(k):
            a = _gf2_mulmod(a, a, poly, m)
        return a

    def gcd(a: int, b: int) -> int:
        while b:
            while a and a.bit_length() >= b.bit_length():
                a ^= b << (a.bit_length() - b.bit_length())
            a, b = b, a
        return a

    if frob(m) != 2:
        return False
    return all(gcd(poly, frob(m // r) ^ 2) == 1 for r in _prime_factors(m))


@cache
def gf2_log_tables(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Exponential and trace tables of GF(2^m) for the primitive element ``alpha`` (a root of
    :func:`primitive_polynomial_gf2`).

    Returns
    -------
    antilog : np.ndarray
        ``(2^m - 1,)`` integers: ``antilog[t] = alpha^t`` in the polynomial basis (a bit mask).
    trace : np.ndarray
        ``(2^m - 1,)`` in {0, 1}: ``Tr(alpha^t)``, the binary m-sequence of the primitive
        polynomial (Golomb, *Shift Register Sequences*, 1967). Read-only arrays.
    """
    poly = primitive_polynomial_gf2(m)
    n = (1 << m) - 1
    antilog = np.empty(n, dtype=np.int64)
    v = 1
    for t in range(n):
        antilog[t] = v
        v <<= 1
        if v >> m & 1:
            v ^= poly
    trace = subfield_trace(m, m, antilog)
    antilog.flags.writeable = False
    trace.flags.writeable = False
    return antilog, trace


def subfield_trace(m: int, k: int, antilog: np.ndarray | None = None) -> np.ndarray:
    """``Tr_1^k(beta^s)`` for ``s = 0 .. 2^k - 2``, ``beta = alpha^((2^m - 1)/(2^k - 1))`` the
    primitive element of the subfield GF(2^k) of GF(2^m) (``k | m``).

    ``Tr_1^k(y) = y + y^2 + ... + y^(2^(k-1))``, added in the polynomial basis of GF(2^m) (XOR of
    bit masks); the result is 0 or 1 (an element of GF(2)).
    """
    if m % k:
        raise ValueError(f"the subfield degree k={k} must divide m={m}")
    if antilog is None:
        antilog = gf2_log_tables(m)[0]
    n = (1 << m) - 1
    e = n // ((1 << k) - 1)
    s = np.arange((1 << k) - 1, dtype=np.int64)
    acc = np.zeros(len(s), dtype=np.int64)
    for i in range(k):
        acc ^= antilog[(e * s * (1 << i)) % n]
    if not np.all((acc == 0) | (acc == 1)):  # pragma: no cover - a field identity
        raise RuntimeError("subfield trace outside GF(2)")
    return acc.astype(np.uint8)


def _digits(q: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """``p, m``, the base-``p`` digits ``(q, m)`` of ``0 .. q-1`` and the place values."""
    pm = prime_power(q)
    if pm is None:
        raise ValueError(f"q must be a prime power, got {q}")
    p, m = pm
    powers = p ** np.arange(m)
    return p, m, (np.arange(q)[:, None] // powers) % p, powers


def _times(a: np.ndarray, b: np.ndarray, p: int, m: int, powers: np.ndarray) -> np.ndarray:
    """Products in GF(p^m) of digit arrays ``a, b`` (broadcast over leading axes), as integers.

    Polynomial product of the digit vectors, reduced modulo the irreducible polynomial of
    :func:`irreducible_polynomial`.
    """
    f = irreducible_polynomial(p, m)
    shape = np.broadcast_shapes(a.shape, b.shape)[:-1]
    prod = np.zeros((*shape, 2 * m - 1), dtype=np.int64)
    for i in range(m):
        for j in range(m):
            prod[..., i + j] += a[..., i] * b[..., j]
    prod %= p
    for deg in range(2 * m - 2, m - 1, -1):  # x^m = -(f_0 + ... + f_{m-1} x^{m-1})
        c = prod[..., deg].copy()
        for i in range(m):
            prod[..., deg - m + i] -= c * f[i]
        prod[..., deg] = 0
        prod %= p
    return prod[..., :m] @ powers


@lru_cache(maxsize=8)
def field_tables(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Addition and multiplication tables ``(q, q)`` of GF(q), ``q = p^m`` a prime power.

    Elements are the integers ``0 .. q-1``, read as base-``p`` digit vectors (the polynomial
    basis modulo :func:`irreducible_polynomial`), so ``0`` and ``1`` are the field's zero and
    one. Memory ``O(q^2 m)``: meant for small fields. Read-only arrays.
    """
    p, m, digits, powers = _digits(q)
    add = ((digits[:, None, :] + digits[None, :, :]) % p) @ powers
    mul = _times(digits[:, None, :], digits[None, :, :], p, m, powers)
    add.flags.writeable = False
    mul.flags.writeable = False
    return add, mul


def jacobsthal_matrix(q: int) -> np.ndarray:
    """``Q[a, b] = chi(a - b)`` over GF(q), ``q`` an odd prime power: entries 0, ±1.

    ``chi`` is the quadratic character (1 on non-zero squares, -1 on non-squares, 0 at 0).
    ``Q J = J Q = 0`` and ``Q Q^T = q I - J``; ``Q`` is symmetric for ``q = 1 (mod 4)`` and
    skew for ``q = 3 (mod 4)`` (Paley 1933). Memory ``O(q^2)``.
    """
    p, m, digits, powers = _digits(q)
    squares = np.zeros(q, dtype=bool)
    squares[_times(digits, digits, p, m, powers)[1:]] = True
    chi = np.where(squares, 1, -1)
    chi[0] = 0
    diff = ((digits[:, None, :] - digits[None, :, :]) % p) @ powers
    return chi[diff]
