"""Small finite-field helpers for the algebraic constructions (GF(p^m), GF(2^n))."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["gf2_field", "irreducible_polynomial", "prime_power"]


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
