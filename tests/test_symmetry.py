"""ebv_gen.symmetry: rotations of finite order, orbit starts, and the optimiser keeping them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ebv_gen.adam import CoherenceAdam
from ebv_gen.symmetry import orbit_start, rotation_of_order


@settings(max_examples=40, deadline=None)
@given(dim=st.integers(2, 9), order=st.integers(2, 9), seed=st.integers(0, 2**31 - 1))
def test_a_rotation_of_order_m_is_orthogonal_has_that_order_and_is_not_plus_or_minus_one(
    dim, order, seed
):
    if dim == order == 2:
        with pytest.raises(ValueError, match="order=2"):
            rotation_of_order(dim, order)
        return
    g = rotation_of_order(dim, order, torch.Generator().manual_seed(seed))
    eye = torch.eye(dim, dtype=torch.float64)
    assert g.dtype == torch.float64 and g.shape == (dim, dim)
    assert torch.allclose(g @ g.T, eye, atol=1e-12)
    assert torch.allclose(torch.linalg.matrix_power(g, order), eye, atol=1e-10)
    assert not torch.allclose(g, eye, atol=1e-9) and not torch.allclose(g, -eye, atol=1e-9)


def _orbit_gram_is_block_circulant(Z: torch.Tensor, order: int, atol: float) -> bool:
    """Whether the Gram matrix of the orbit rows (the first ``order * G``) is invariant under
    the shift by one orbit step: ``<g^(k+1) v_i, g^(l+1) v_j> = <g^k v_i, g^l v_j>``."""
    G = Z.shape[0] // order
    orb = Z[: order * G]
    gram = orb @ orb.T
    shifted = torch.roll(gram, shifts=(G, G), dims=(0, 1))
    return torch.allclose(gram, shifted, atol=atol)


@pytest.mark.parametrize(("num", "dim", "order"), [(20, 6, 5), (23, 6, 5), (30, 3, 3), (12, 7, 6)])
def test_an_orbit_start_is_unit_rows_whose_orbits_repeat_one_gram_block(num, dim, order):
    Z = orbit_start(4, num, dim, order, generator=torch.Generator().manual_seed(0))
    assert Z.shape == (4, num, dim) and Z.dtype == torch.float64
    assert torch.allclose(torch.linalg.vector_norm(Z, dim=-1), torch.ones(4, num, dtype=Z.dtype))
    for z in Z:
        assert _orbit_gram_is_block_circulant(z, order, 1e-12)
    # a random packing has no such structure
    R = torch.randn(order * (num // order), dim, generator=torch.Generator().manual_seed(1))
    R = R.double() / R.double().norm(dim=1, keepdim=True)
    assert not _orbit_gram_is_block_circulant(R, order, 1e-3)


def test_orbit_starts_are_reproducible_from_the_generator():
    a = orbit_start(3, 25, 5, 4, generator=torch.Generator().manual_seed(7))
    b = orbit_start(3, 25, 5, 4, generator=torch.Generator().manual_seed(7))
    c = orbit_start(3, 25, 5, 4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert orbit_start(0, 25, 5, 4).shape == (0, 25, 5)


def test_the_optimiser_keeps_the_symmetry_of_an_orbit_start_to_rounding():
    # the similarities are invariant under g acting on every point, so the surrogate's
    # gradient, the moments and the retraction are equivariant: in float64 the orbit
    # structure survives the steps to rounding (which grows where the symmetric packing is
    # unstable: 4e-7 after 200 steps in one of these two, 5e-13 in the other)
    Z0 = orbit_start(2, 40, 6, 5, generator=torch.Generator().manual_seed(3))
    opt = CoherenceAdam(Z0, beta=(0.5, 2e3))
    for i in range(50):
        opt.step(i / 200)
    Z = opt.state["Z"]
    assert not torch.allclose(Z, Z0, atol=1e-2)  # it moved
    for z in Z:
        assert _orbit_gram_is_block_circulant(z, 5, 1e-11)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"num": 9, "order": 5}, "num"),
        ({"order": 1}, "order"),
        ({"dim": 1}, "dim"),
        ({"count": -1}, "count"),
        ({"dim": 2, "order": 2}, "order=2"),
    ],
)
def test_orbit_start_refuses_bad_arguments_by_name(kw, match):
    args = {"count": 2, "num": 20, "dim": 6, "order": 5, **kw}
    with pytest.raises(ValueError, match=match):
        orbit_start(args["count"], args["num"], args["dim"], args["order"])
