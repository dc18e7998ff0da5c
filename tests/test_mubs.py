"""Real mutually unbiased bases: the Kerdock set, unbiasedness, the embedding and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grassmann import (
    coherence,
    embedded_mubs,
    known_optimal,
    lower_bound,
    mub_coherence,
    mub_dimension,
    punctured_mubs,
    real_mubs,
)
from grassmann.mubs import _kerdock_set, punctured_mub_coherence


@pytest.mark.parametrize("m", [2, 4, 6, 8, 10])
def test_kerdock_set_is_alternating_with_nonsingular_differences(m):
    # the property the unbiasedness rests on, for every d = 2^m <= 1024 (checked to 4096 once)
    mats = _kerdock_set(m)
    assert mats.shape == (2 ** (m - 1), m, m)
    assert (mats == mats.transpose(0, 2, 1)).all()
    assert (np.diagonal(mats, axis1=1, axis2=2) == 0).all()
    i, j = np.triu_indices(len(mats), 1)
    diff = (mats[i] + mats[j]) % 2
    # det over the integers mod 2 = det over GF(2); |det| <= m^(m/2) is exact in float64
    det = np.round(np.linalg.det(diff.astype(np.float64))).astype(np.int64) % 2
    assert (det == 1).all()
    assert (np.round(np.linalg.det(mats[1:].astype(np.float64))).astype(np.int64) % 2 == 1).all()


@pytest.mark.parametrize("dim", [4, 16, 64])
def test_real_mubs_are_orthonormal_bases_unbiased_to_each_other(dim):
    frame = real_mubs(dim)
    nb = dim // 2 + 1
    assert frame.shape == (nb * dim, dim) and frame.dtype == torch.float64
    gram = (frame @ frame.T).abs().view(nb, dim, nb, dim).transpose(1, 2)  # (a, b, i, j)
    eye = torch.eye(dim, dtype=torch.float64)
    for a in range(nb):
        assert torch.allclose(gram[a, a], eye, atol=1e-14)
    off = gram[~torch.eye(nb, dtype=torch.bool)]  # (nb (nb-1), dim, dim): cross-basis blocks
    assert torch.allclose(off, torch.full_like(off, 1 / math.sqrt(dim)), atol=1e-14)


@pytest.mark.parametrize("dim", [4, 16, 64])
def test_full_mub_set_meets_the_levenstein_bound_and_is_known_optimal(dim):
    num = dim * (dim + 2) // 2
    bound = lower_bound(num, dim).value
    assert abs(bound - 1 / math.sqrt(dim)) < 1e-12
    # Levenstein's formula at N = d (d+2)/2 gives exactly 1/d
    lev = (3 * num - dim * (dim + 2)) / ((dim + 2) * (num - dim))
    assert abs(lev - 1 / dim) < 1e-15
    frame = known_optimal(num, dim)
    assert frame is not None and frame.shape == (num, dim)
    assert abs(coherence(frame) - bound) < 1e-12


def test_real_mubs_partial_sets_dtype_and_device(device):
    frame = real_mubs(256, 3, dtype=torch.float32, device=device)
    assert frame.shape == (768, 256) and frame.dtype == torch.float32
    assert frame.device.type == torch.device(device).type
    assert abs(coherence(frame) - 1 / 16) < 1e-7
    assert torch.equal(real_mubs(16, 1), torch.eye(16, dtype=torch.float64))


@pytest.mark.parametrize(
    ("num", "dim", "sub"),
    [(1000, 100, 64), (5, 4, 4), (12, 4, 4), (13, 5, 4), (144, 16, 16), (148, 20, 16)],
)
def test_embedded_mubs_attain_one_over_sqrt_of_the_mub_dimension(num, dim, sub):
    assert mub_dimension(num, dim) == sub
    mu = mub_coherence(num, dim)
    assert mu == 1 / math.sqrt(sub)
    frame = embedded_mubs(num, dim)
    assert frame.shape == (num, dim)
    assert torch.allclose(frame.norm(dim=1), torch.ones(num, dtype=torch.float64))
    assert abs(coherence(frame) - mu) < 1e-14
    # the standard basis of R^dim comes first
    assert torch.equal(frame[:dim], torch.eye(dim, dtype=torch.float64))


@pytest.mark.parametrize(("num", "dim"), [(11, 4), (12, 4), (137, 16), (144, 16), (2100, 64)])
def test_known_optimal_uses_mubs_in_the_whole_orthoplex_range(num, dim):
    # d = 4^k, d (d+1)/2 < N <= d (d+2)/2: coherence 1/sqrt(d) = the orthoplex bound
    frame = known_optimal(num, dim)
    assert frame is not None and frame.shape == (num, dim)
    bound = lower_bound(num, dim)
    assert bound.name == "orthoplex" and abs(coherence(frame) - bound.value) < 1e-12
    assert known_optimal(dim * (dim + 1) // 2, dim) is None  # Welch range: not optimal


def test_embedded_mubs_small_num_is_orthonormal_and_capacity_is_exact():
    assert mub_coherence(7, 9) == 0.0 and mub_dimension(7, 9) is None
    assert coherence(embedded_mubs(7, 9)) == 0.0
    most = 100 + 64 * 32  # the standard basis plus 32 unbiased bases of R^64
    assert mub_dimension(most, 100) == 64 and mub_dimension(most + 1, 100) is None
    assert mub_coherence(most + 1, 100) is None
    assert mub_dimension(10, 3) is None and mub_coherence(10, 3) is None


@pytest.mark.parametrize("dim", [15, 63])
def test_punctured_mubs_attain_their_coherence_and_start_with_a_simplex(dim):
    frame = punctured_mubs(dim)
    sub = dim + 1
    assert frame.shape == (sub * sub // 2, dim)
    assert torch.allclose(frame.norm(dim=1), torch.ones(len(frame), dtype=torch.float64))
    for num in (2, sub, sub + 1, len(frame)):
        assert abs(coherence(frame[:num]) - punctured_mub_coherence(num, dim)) < 1e-14
        signed = coherence(frame[:num], mode="sphere")
        assert abs(signed - punctured_mub_coherence(num, dim, signed=True)) < 1e-14
    assert punctured_mub_coherence(len(frame), dim) == (math.isqrt(sub) + 1) / dim
    # the first basis is a regular simplex: all inner products -1/dim
    gram = frame[:sub] @ frame[:sub].T
    assert torch.allclose(
        gram[~torch.eye(sub, dtype=torch.bool)],
        torch.full((sub * dim,), -1.0 / dim, dtype=gram.dtype),
    )
    # the punctured vectors are the MUBs of R^(dim+1) without coordinate 0
    full = real_mubs(sub)[sub:]
    assert torch.allclose(frame, full[:, 1:] * math.sqrt(sub / dim))


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="dim must be a power of 4.*got 8"):
        real_mubs(8)
    with pytest.raises(ValueError, match="dim must be >= 4"):
        real_mubs(1)
    with pytest.raises(ValueError, match="bases must be <= 9"):
        real_mubs(16, 10)
    with pytest.raises(TypeError, match="dim must be an integer"):
        real_mubs(16.0)
    with pytest.raises(ValueError, match="do not fit.*at most 2148"):
        embedded_mubs(2149, 100)
    with pytest.raises(ValueError, match="need dim >= 4; with dim=3 at most num=3"):
        embedded_mubs(4, 3)
    with pytest.raises(ValueError, match="num must be >= 1"):
        mub_coherence(0, 3)
    with pytest.raises(ValueError, match="dim must be 4\\^k - 1 .*got 31"):
        punctured_mubs(31)
    with pytest.raises(ValueError, match="num must be <= 128"):
        punctured_mubs(15, 129)
