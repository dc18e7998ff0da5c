"""Tests of grassmann.heads: logits, gradients, Riemannian training, state, files, errors."""

from __future__ import annotations

import geoopt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from grassmann import (
    EBVHead,
    FixedClassifierHead,
    GrassmannHead,
    principal_angles,
    reorthonormalize_,
)
from grassmann.heads import DEFAULT_COSINE_SCALE
from grassmann.manifold import Grassmann
from grassmann.npyio import InvalidContentError, UnusableFileError


@pytest.fixture(autouse=True)
def _one_cpu_thread(one_cpu_thread):
    """Tiny tensors: one intra-op thread for every test here (conftest's one_cpu_thread)."""


def _haar(c: int, n: int, k: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(c, n, k, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return q.to(dtype)


def _orth_error(s: torch.Tensor) -> float:
    s = s.detach().double()
    eye = torch.eye(s.shape[-1], dtype=torch.float64, device=s.device)
    return float((s.mT @ s - eye).abs().amax())


# ---------------------------------------------------------------------------------------------
# logits
# ---------------------------------------------------------------------------------------------


def test_grassmann_head_logits_are_scaled_projection_norms(device):
    bases = _haar(7, 12, 3, seed=1)
    head = GrassmannHead(12, 7, 3, scale=5.0, init=bases, dtype=torch.float64).to(device)
    x = torch.randn(2, 4, 12, dtype=torch.float64, device=device)
    logits = head(x)
    assert logits.shape == (2, 4, 7)
    assert logits.device.type == device.type
    xh = x / x.norm(dim=-1, keepdim=True)
    expected = torch.stack(
        [5.0 * (xh @ bases[i].to(device)).norm(dim=-1) for i in range(7)], dim=-1
    )
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-10)
    # k = n: every feature lies in every class subspace, logit = scale
    full = GrassmannHead(4, 3, 4, scale=2.0, seed=0, dtype=torch.float64).to(device)
    torch.testing.assert_close(
        full(torch.randn(5, 4, dtype=torch.float64, device=device)),
        torch.full((5, 3), 2.0, dtype=torch.float64, device=device),
    )


def test_grassmann_head_gradient_is_finite_where_projection_vanishes():
    bases = torch.zeros(2, 3, 1, dtype=torch.float64)
    bases[0, 0, 0] = 1.0
    bases[1, 1, 0] = 1.0
    head = GrassmannHead(3, 2, 1, init=bases, dtype=torch.float64)
    x = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    head(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.subspaces.grad).all()
    assert float(head(x).detach().abs().max()) < 1e-4


def test_ebv_head_logits_are_scaled_cosines(device):
    w = torch.randn(6, 5, dtype=torch.float64) * 3.0
    head = EBVHead(w, scale=4.0, dtype=torch.float64).to(device)
    torch.testing.assert_close(
        head.vectors.norm(dim=1), torch.ones(6, dtype=torch.float64, device=device)
    )
    x = torch.randn(8, 5, dtype=torch.float64, device=device)
    expected = 4.0 * F.cosine_similarity(x[:, None, :], w.to(device)[None], dim=-1)
    torch.testing.assert_close(head(x), expected)
    assert not list(head.parameters())  # the class vectors are never trained

    mapped = EBVHead(w, in_features=3, scale=4.0, dtype=torch.float64).to(device)
    z = torch.randn(8, 3, dtype=torch.float64, device=device)
    feat = mapped.linear(z)
    expected = 4.0 * F.cosine_similarity(feat[:, None, :], w.to(device)[None], dim=-1)
    torch.testing.assert_close(mapped(z), expected)
    assert head.scale == 4.0 and EBVHead(w).scale == DEFAULT_COSINE_SCALE


def test_fixed_random_head_is_seeded_unit_and_fixed():
    a = FixedClassifierHead(20, 16, seed=3)
    b = FixedClassifierHead(20, 16, seed=3)
    c = FixedClassifierHead(20, 16, seed=4)
    assert torch.equal(a.vectors, b.vectors)
    assert not torch.allclose(a.vectors, c.vectors)
    torch.testing.assert_close(a.vectors.norm(dim=1), torch.ones(20))
    assert not list(a.parameters())


@pytest.mark.parametrize(("num_classes", "dim"), [(2, 1), (10, 9), (10, 64)])
def test_simplex_head_is_equiangular_with_cosine_minus_one_over_c_minus_one(num_classes, dim):
    head = FixedClassifierHead(num_classes, dim, kind="simplex", dtype=torch.float64)
    gram = head.vectors @ head.vectors.T
    expected = torch.full_like(gram, -1.0 / (num_classes - 1))
    expected.fill_diagonal_(1.0)
    torch.testing.assert_close(gram, expected, rtol=0, atol=1e-12)


def test_simplex_head_needs_at_most_dim_plus_one_classes():
    with pytest.raises(ValueError, match=r"num_classes <= dim \+ 1.*num_classes=11 with dim=9"):
        FixedClassifierHead(11, 9, kind="simplex")
    with pytest.raises(ValueError, match="kind must be one of"):
        FixedClassifierHead(5, 9, kind="orthoplex")


# ---------------------------------------------------------------------------------------------
# gradients (float64 gradcheck)
# ---------------------------------------------------------------------------------------------


def test_gradcheck_grassmann_head_wrt_features_and_subspaces():
    head = GrassmannHead(6, 4, 2, scale=3.0, seed=0, dtype=torch.float64)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    s = head.subspaces.detach().clone().requires_grad_(True)

    def f(x_, s_):
        return functional_call(head, {"subspaces": s_}, (x_,))

    assert torch.autograd.gradcheck(f, (x, s))
    assert torch.autograd.gradgradcheck(f, (x, s))


def test_gradcheck_ebv_head_wrt_features_and_linear_map():
    head = EBVHead(torch.randn(5, 4), in_features=3, scale=2.0, dtype=torch.float64)
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    w = head.linear.weight.detach().clone().requires_grad_(True)
    b = head.linear.bias.detach().clone().requires_grad_(True)

    def f(x_, w_, b_):
        return functional_call(head, {"linear.weight": w_, "linear.bias": b_}, (x_,))

    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("kind", ["random", "simplex"])
def test_gradcheck_fixed_head_wrt_features(kind):
    head = FixedClassifierHead(5, 4, kind=kind, dtype=torch.float64)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(head, (x,))


# ---------------------------------------------------------------------------------------------
# Riemannian training
# ---------------------------------------------------------------------------------------------


def _exp_by_svd(s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Exp_S(U) = S Q cos(Sigma) Q^T + P sin(Sigma) Q^T, U = P Sigma Q^T (EAS 1998)."""
    p, sig, qt = torch.linalg.svd(u, full_matrices=False)
    q = qt.mT
    return s @ q @ torch.diag_embed(torch.cos(sig)) @ qt + p @ torch.diag_embed(torch.sin(sig)) @ qt


def test_one_rsgd_step_with_expmap_equals_the_gcr_update_rule(device):
    torch.manual_seed(0)
    head = GrassmannHead(10, 5, 3, seed=2, retraction="expmap", dtype=torch.float64).to(device)
    x = torch.randn(16, 10, dtype=torch.float64, device=device)
    y = torch.randint(0, 5, (16,), device=device)
    lr = 0.3
    opt = geoopt.optim.RiemannianSGD(head.parameters(), lr=lr)
    s0 = head.subspaces.detach().clone()
    F.cross_entropy(head(x), y).backward()
    g = head.subspaces.grad.detach().clone()
    opt.step()

    rgrad = g - s0 @ (s0.mT @ g)  # projection to the horizontal space
    expected = _exp_by_svd(s0, -lr * rgrad)  # geodesic step
    torch.testing.assert_close(head.subspaces.detach(), expected, rtol=0, atol=1e-6)
    assert float((-lr * rgrad).norm()) > 1e-2  # the step is not trivially small
    assert _orth_error(head.subspaces) < 1e-12


def test_weight_decay_on_the_subspaces_is_projected_away():
    heads = [GrassmannHead(8, 4, 2, seed=0, dtype=torch.float64) for _ in range(2)]
    x = torch.randn(16, 8, dtype=torch.float64)
    y = torch.randint(0, 4, (16,))
    for head, wd in zip(heads, (0.0, 0.5), strict=True):
        opt = geoopt.optim.RiemannianSGD(head.parameters(), lr=0.2, weight_decay=wd)
        F.cross_entropy(head(x), y).backward()
        opt.step()
    torch.testing.assert_close(heads[0].subspaces, heads[1].subspaces, rtol=0, atol=1e-12)


def _train(head, steps, opt, x, y):
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(head(x), y).backward()
        opt.step()
    return float(F.cross_entropy(head(x), y).detach())


def test_subspaces_stay_orthonormal_after_1000_float32_steps_by_the_retraction():
    torch.manual_seed(0)
    head = GrassmannHead(32, 10, 4, seed=0)  # default retraction: QR (one Cholesky-QR pass)
    x, y = torch.randn(128, 32), torch.randint(0, 10, (128,))
    opt = geoopt.optim.RiemannianSGD(
        [{"params": head.parameters(), "weight_decay": 0.0}], lr=0.1, momentum=0.9
    )
    with torch.no_grad():
        start = float(F.cross_entropy(head(x), y))
    end = _train(head, 1000, opt, x, y)
    assert head.subspaces.dtype == torch.float32
    assert _orth_error(head.subspaces) < 1e-5
    assert end < 0.5 * start


def test_expmap_retraction_stays_orthonormal_without_stabilize():
    """As docs/heads.rst says: the exponential map re-orthonormalises itself beyond 16 ulps, so
    1000 float32 steps with momentum need no ``stabilize=`` (before issue 10: ~1e-4)."""
    torch.manual_seed(0)
    head = GrassmannHead(32, 10, 4, seed=0, retraction="expmap")
    x, y = torch.randn(128, 32), torch.randint(0, 10, (128,))
    opt = geoopt.optim.RiemannianSGD(head.parameters(), lr=0.1, momentum=0.9)
    with torch.no_grad():
        start = float(F.cross_entropy(head(x), y))
    end = _train(head, 1000, opt, x, y)
    assert _orth_error(head.subspaces) < 32 * torch.finfo(torch.float32).eps  # 16 ulps, in fp64
    assert end < 0.5 * start


def test_riemannian_adam_trains_the_subspaces(device):
    torch.manual_seed(0)
    head = GrassmannHead(16, 6, 2, seed=0).to(device)
    x = torch.randn(64, 16, device=device)
    y = torch.randint(0, 6, (64,), device=device)
    opt = geoopt.optim.RiemannianAdam(head.parameters(), lr=0.02)
    with torch.no_grad():
        start = float(F.cross_entropy(head(x), y))
    end = _train(head, 100, opt, x, y)
    assert end < 0.7 * start
    assert isinstance(head.subspaces, geoopt.ManifoldParameter)
    assert _orth_error(head.subspaces) < 1e-5


def test_fixed_subspaces_stay_fixed_while_the_backbone_trains(device):
    bases = _haar(4, 8, 2, seed=5, dtype=torch.float32)
    head = GrassmannHead(8, 4, 2, init=bases, trainable=False)
    model = nn.Sequential(nn.Linear(5, 8), head).to(device)
    assert "1.subspaces" not in dict(model.named_parameters())
    assert "1.subspaces" in model.state_dict()
    w0 = model[0].weight.detach().clone()
    opt = geoopt.optim.RiemannianSGD(model.parameters(), lr=0.5, momentum=0.9)
    x = torch.randn(32, 5, device=device)
    y = torch.randint(0, 4, (32,), device=device)
    _train(model, 3, opt, x, y)
    assert torch.equal(head.subspaces.cpu(), bases)
    assert not torch.allclose(model[0].weight, w0)


def test_init_from_bases_tensor_equals_those_bases():
    bases = _haar(5, 9, 3, seed=7)
    head = GrassmannHead(9, 5, 3, init=bases, dtype=torch.float64)
    assert torch.equal(head.subspaces.detach(), bases)
    assert isinstance(head.subspaces, geoopt.ManifoldParameter)
    assert isinstance(head.subspaces.manifold, Grassmann)
    assert head.subspaces.requires_grad


def test_random_init_is_seeded_and_uses_the_global_rng_without_seed():
    a, b = GrassmannHead(8, 3, 2, seed=1), GrassmannHead(8, 3, 2, seed=1)
    assert torch.equal(a.subspaces, b.subspaces)
    torch.manual_seed(11)
    c = GrassmannHead(8, 3, 2)
    torch.manual_seed(11)
    d = GrassmannHead(8, 3, 2)
    assert torch.equal(c.subspaces, d.subspaces)
    assert not torch.equal(a.subspaces, c.subspaces)
    assert _orth_error(a.subspaces) < 1e-6


def test_reorthonormalize_restores_orthonormality_and_keeps_the_subspaces():
    head = GrassmannHead(10, 4, 3, seed=0, dtype=torch.float64)
    model = nn.Sequential(nn.Identity(), head)
    x = torch.randn(6, 10, dtype=torch.float64)
    before = head(x).detach()
    with torch.no_grad():
        mix = torch.eye(3, dtype=torch.float64) + 1e-3 * torch.randn(4, 3, 3, dtype=torch.float64)
        head.subspaces.copy_(head.subspaces @ mix)  # same spans, bases no longer orthonormal
    assert _orth_error(head.subspaces) > 1e-4
    assert reorthonormalize_(model) is model
    assert _orth_error(head.subspaces) < 1e-12
    torch.testing.assert_close(head(x), before, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# state, precision, devices
# ---------------------------------------------------------------------------------------------


def test_state_dict_round_trip_gives_identical_logits(device):
    x = torch.randn(5, 12, device=device)
    heads = [
        (GrassmannHead(12, 6, 3, seed=0), GrassmannHead(12, 6, 3, seed=1)),
        (GrassmannHead(12, 6, 3, seed=0), GrassmannHead(12, 6, 3, seed=1, trainable=False)),
        (EBVHead(torch.randn(6, 4), in_features=12), EBVHead(torch.randn(6, 4), in_features=12)),
        (FixedClassifierHead(6, 12, seed=0), FixedClassifierHead(6, 12, seed=1)),
    ]
    for source, target in heads:
        source, target = source.to(device), target.to(device)
        with torch.no_grad():  # move away from the initial state
            for p in source.parameters():
                p.copy_(
                    p.manifold.retr(p, 0.1 * p.manifold.proju(p, torch.randn_like(p)))
                    if isinstance(p, geoopt.ManifoldParameter)
                    else p + 0.1
                )
        assert not torch.equal(source(x), target(x))
        target.load_state_dict(source.state_dict())
        assert torch.equal(source(x), target(x))
    fresh = GrassmannHead(12, 6, 3, seed=5).to(device)
    fresh.load_state_dict(heads[0][0].state_dict())
    assert isinstance(fresh.subspaces, geoopt.ManifoldParameter)
    assert isinstance(fresh.subspaces.manifold, Grassmann)


def test_to_moves_buffers_and_keeps_the_manifold_parameter(device):
    head = GrassmannHead(8, 3, 2, seed=0).to(device, torch.float64)
    assert head.subspaces.device.type == device.type and head.subspaces.dtype == torch.float64
    assert isinstance(head.subspaces, geoopt.ManifoldParameter)
    ebv = FixedClassifierHead(3, 8).to(device)
    assert ebv.vectors.device.type == device.type


@pytest.mark.parametrize(
    "make",
    [
        lambda: GrassmannHead(16, 5, 4, seed=0),
        lambda: EBVHead(torch.randn(5, 8), in_features=16),
        lambda: FixedClassifierHead(5, 16, kind="simplex"),
    ],
    ids=["grassmann", "ebv", "simplex"],
)
def test_autocast_bfloat16_forward_and_backward_are_finite(device, make):
    torch.manual_seed(0)
    backbone = nn.Linear(10, 16).to(device)
    head = make().to(device)
    x = torch.randn(32, 10, device=device)
    y = torch.randint(0, 5, (32,), device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        logits = head(backbone(x))
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits.float(), y).backward()
    grads = [p.grad for p in [*backbone.parameters(), *head.parameters()]]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert float(backbone.weight.grad.abs().sum()) > 0
    if isinstance(head, GrassmannHead):
        assert logits.dtype == torch.float32
        assert head.subspaces.grad.dtype == torch.float32


def test_extra_repr_names_the_configuration():
    text = repr(GrassmannHead(16, 10, 4, trainable=False, seed=0))
    for part in ("in_features=16", "num_classes=10", "subspace_dim=4", "trainable=False"):
        assert part in text
    assert "dim=8" in repr(EBVHead(torch.randn(3, 8)))
    assert "kind='simplex'" in repr(FixedClassifierHead(3, 8, kind="simplex"))


# ---------------------------------------------------------------------------------------------
# errors and files
# ---------------------------------------------------------------------------------------------


def test_wrong_feature_width_names_input_got_and_expected():
    heads = [
        GrassmannHead(16, 3, 2, seed=0),
        EBVHead(torch.randn(3, 8), in_features=16),
        FixedClassifierHead(3, 16),
    ]
    for head in heads:
        with pytest.raises(ValueError, match=r"input must have 16 features.*\(4, 15\).*15"):
            head(torch.randn(4, 15))
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        heads[0](np.zeros((4, 16)))


def test_bad_init_tensor_raises_naming_init_shape_and_expected():
    with pytest.raises(ValueError, match=r"init must have shape.*\(4, 8, 2\), got \(4, 8, 3\)"):
        GrassmannHead(8, 4, 2, init=_haar(4, 8, 3))
    with pytest.raises(ValueError, match="init must have orthonormal columns"):
        GrassmannHead(8, 4, 2, init=2.0 * _haar(4, 8, 2))
    with pytest.raises(ValueError, match="init must be 'random'"):
        GrassmannHead(8, 4, 2, init="haar")
    with pytest.raises(ValueError, match="subspace_dim must be <= 8"):
        GrassmannHead(8, 4, 9)
    with pytest.raises(ValueError, match="vectors must be a 2-D tensor"):
        EBVHead(torch.randn(3, 4, 5))
    with pytest.raises(ValueError, match="non-zero rows"):
        EBVHead(torch.zeros(3, 4))


def test_heads_load_npy_files(tmp_path):
    vectors = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 5)))[0].T  # 5 x 8
    np.save(tmp_path / "ebv.npy", vectors.astype(np.float32))
    head = EBVHead(tmp_path / "ebv.npy")
    np.testing.assert_allclose(head.vectors.numpy(), vectors, atol=1e-6)

    bases = _haar(4, 8, 2, seed=3)
    np.save(tmp_path / "bases.npy", bases.numpy())
    gcr = GrassmannHead(8, 4, 2, init=str(tmp_path / "bases.npy"), dtype=torch.float64)
    torch.testing.assert_close(gcr.subspaces.detach(), bases, rtol=0, atol=1e-7)
    assert "init='path'" in repr(gcr)
    with pytest.raises(ValueError, match=r"init \(loaded from .*bases.npy'\) must have shape"):
        GrassmannHead(8, 5, 2, init=tmp_path / "bases.npy")


def test_heads_reject_bad_npy_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnusableFileError, match="pickled"):
        EBVHead(tmp_path / "obj.npy")
    np.save(tmp_path / "long.npy", 3.0 * np.eye(4))
    with pytest.raises(InvalidContentError, match="unit vectors"):
        EBVHead(tmp_path / "long.npy")
    np.save(tmp_path / "flat.npy", np.eye(4))
    with pytest.raises(UnusableFileError, match="3-D"):
        GrassmannHead(4, 4, 1, init=tmp_path / "flat.npy")
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="not a readable .npy file"):
        GrassmannHead(4, 4, 1, init=tmp_path / "junk.npy")
    with pytest.raises(ValueError, match="no such file"):
        EBVHead(tmp_path / "missing.npy")


# ---------------------------------------------------------------------------------------------
# the EBV paper's scale
# ---------------------------------------------------------------------------------------------


def test_cosine_heads_default_to_the_ebv_papers_temperature_0_07():
    assert EBVHead(torch.eye(3)).scale == pytest.approx(1 / 0.07)
    assert FixedClassifierHead(3, 4).scale == pytest.approx(1 / 0.07)
    head = EBVHead(torch.eye(3), dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(head(x), torch.tensor([[1 / 0.07, 0.0, 0.0]], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# a dimension per class
# ---------------------------------------------------------------------------------------------

MIXED = [3, 1, 3, 2, 1]


def test_mixed_dimension_logits_equal_a_per_class_reference(device):
    head = GrassmannHead(9, 5, MIXED, scale=3.0, seed=0, dtype=torch.float64).to(device)
    bases = head.class_bases()
    assert [tuple(b.shape) for b in bases] == [(9, k) for k in MIXED]
    assert head.subspace_dim == tuple(MIXED) and head.subspace_dims == tuple(MIXED)
    assert sorted(n for n, _ in head.named_parameters()) == [
        "subspaces_k1",
        "subspaces_k2",
        "subspaces_k3",
    ]
    assert [(k, m) for k, m, _ in head.subspace_groups()] == [(1, (1, 4)), (2, (3,)), (3, (0, 2))]
    x = torch.randn(2, 7, 9, dtype=torch.float64, device=device)
    xh = x / x.norm(dim=-1, keepdim=True)
    # the head's logit is s sqrt(||S^T x||^2 + 1e-12)
    expected = torch.stack(
        [3.0 * ((xh @ b).square().sum(-1) + 1e-12).sqrt() for b in bases], dim=-1
    )
    torch.testing.assert_close(head(x), expected, rtol=1e-12, atol=1e-12)
    assert all(_orth_error(b) < 1e-12 for b in bases)
    uniform = GrassmannHead(9, 3, [2, 2, 2], seed=0)
    assert uniform.subspace_dim == 2 and isinstance(uniform.subspaces, geoopt.ManifoldParameter)


def test_mixed_dimension_forward_makes_one_product_per_distinct_dimension():
    head = GrassmannHead(32, 200, [1 + i % 3 for i in range(200)], seed=0)
    x = torch.randn(4, 32)
    with torch.profiler.profile() as prof:
        head(x)
    mms = [e for e in prof.events() if e.name in ("aten::mm", "aten::matmul", "aten::bmm")]
    assert sum(e.name == "aten::mm" for e in mms) == 3  # not 200


def test_mixed_dimension_gradcheck():
    head = GrassmannHead(6, 3, [2, 1, 3], scale=2.0, seed=0, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in head.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in head.parameters()]

    def f(x_, *ps):
        return functional_call(head, dict(zip(names, ps, strict=True)), (x_,))

    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))


def test_mixed_dimension_init_cuts_a_packing_and_keeps_its_minimum_angle():
    packing = _haar(6, 10, 4, seed=3)
    dims = [4, 2, 1, 3, 2, 4]
    head = GrassmannHead(10, 6, dims, init=packing, dtype=torch.float64)
    for i, b in enumerate(head.class_bases()):
        torch.testing.assert_close(b, packing[i, :, : dims[i]], rtol=0, atol=0)

    def min_angle(bases):
        return min(
            float(principal_angles(bases[i], bases[j]).min())
            for i in range(len(bases))
            for j in range(i)
        )

    assert min_angle([b.detach() for b in head.class_bases()]) >= min_angle(list(packing)) - 1e-12
    listed = GrassmannHead(10, 6, dims, init=head.class_bases(), dtype=torch.float64)
    assert all(
        torch.equal(a, b) for a, b in zip(listed.class_bases(), head.class_bases(), strict=True)
    )
    assert "init='bases'" in repr(listed) and "{1: 1, 2: 2, 3: 1, 4: 2}" in repr(listed)


def test_mixed_dimension_heads_train_save_and_reorthonormalise():
    from grassmann.optim import GCRSGD

    torch.manual_seed(0)
    head = GrassmannHead(16, 6, [1, 2, 4, 1, 2, 4], seed=0)
    x, y = torch.randn(96, 16), torch.randint(0, 6, (96,))
    with torch.no_grad():
        start = float(F.cross_entropy(head(x), y))
    end = _train(head, 60, GCRSGD(head.parameters(), lr=0.2, momentum=0.9), x, y)
    assert end < 0.6 * start
    assert all(_orth_error(b) < 1e-5 for b in head.class_bases())
    other = GrassmannHead(16, 6, [1, 2, 4, 1, 2, 4], seed=1)
    other.load_state_dict(head.state_dict())
    assert torch.equal(other(x), head(x))
    fixed = GrassmannHead(16, 6, [1, 2, 4, 1, 2, 4], seed=0, trainable=False)
    assert not list(fixed.parameters()) and "subspaces_k4" in fixed.state_dict()
    assert "_class_order" not in fixed.state_dict()
    with torch.no_grad():
        for _, _, b in head.subspace_groups():
            b.mul_(1.001)
    reorthonormalize_(head)
    assert all(_orth_error(b) < 1e-6 for b in head.class_bases())


def test_mixed_dimension_errors_name_the_argument():
    with pytest.raises(
        ValueError, match=r"sequence of num_classes = 3 ints, got a sequence of length 2"
    ):
        GrassmannHead(8, 3, [1, 2])
    with pytest.raises(ValueError, match=r"subspace_dim\[1\] must be <= 8, got 9"):
        GrassmannHead(8, 3, [1, 9, 2])
    with pytest.raises(TypeError, match=r"subspace_dim\[0\] must be an integer"):
        GrassmannHead(8, 2, [1.5, 2])
    with pytest.raises(ValueError, match=r"max\(subspace_dim\)\) = \(3, 8, 2\), got \(3, 8, 3\)"):
        GrassmannHead(8, 3, [1, 2, 2], init=_haar(3, 8, 3))
    with pytest.raises(ValueError, match=r"orthonormal first 1 columns.*\(class 0\)"):
        GrassmannHead(8, 3, [1, 2, 2], init=2.0 * _haar(3, 8, 2))
    with pytest.raises(
        ValueError, match=r"init\[1\] must have shape \(in_features, subspace_dim\[1\]\)"
    ):
        GrassmannHead(8, 2, [1, 2], init=[_haar(1, 8, 1)[0], _haar(1, 8, 1)[0]])
    with pytest.raises(ValueError, match="init as a sequence must hold num_classes = 2 bases"):
        GrassmannHead(8, 2, [1, 2], init=[_haar(1, 8, 1)[0]])
    with pytest.raises(ValueError, match=r"init\[0\] must have orthonormal columns"):
        GrassmannHead(8, 2, [1, 2], init=[3 * _haar(1, 8, 1)[0], _haar(1, 8, 2)[0]])


# ---------------------------------------------------------------------------------------------
# leaving the manifold: detected in training, refused on loading
# ---------------------------------------------------------------------------------------------


def test_plain_torch_sgd_on_the_subspaces_warns_once_and_names_the_riemannian_optimisers():
    torch.manual_seed(0)
    head = GrassmannHead(32, 10, 4, seed=0)
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    opt = torch.optim.SGD(head.parameters(), lr=0.5, momentum=0.9)
    with pytest.warns(RuntimeWarning) as record:
        _train(head, 40, opt, x, y)
    messages = [str(w.message) for w in record if "GrassmannHead" in str(w.message)]
    assert len(messages) == 1
    for part in ("no longer orthonormal", "GCRSGD", "RiemannianSGD", "reorthonormalize_"):
        assert part in messages[0]
    assert _orth_error(head.subspaces) > 1e-2  # it really did leave the manifold


@pytest.mark.parametrize("optimizer", ["gcrsgd", "rsgd", "radam"])
def test_riemannian_training_never_warns(optimizer):
    import warnings

    from grassmann.optim import GCRSGD

    torch.manual_seed(0)
    head = GrassmannHead(32, 10, [4] * 5 + [2] * 5, seed=0)
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    opt = {
        "gcrsgd": lambda p: GCRSGD(p, lr=0.2, momentum=0.9),
        "rsgd": lambda p: geoopt.optim.RiemannianSGD(p, lr=0.2, momentum=0.9),
        "radam": lambda p: geoopt.optim.RiemannianAdam(p, lr=0.02),
    }[optimizer](head.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _train(head, 300, opt, x, y)
    assert head._forward_calls == 300 + 1  # the final loss evaluation of _train is in training mode


def test_the_check_runs_at_calls_1_2_4_8_and_not_in_eval_mode_or_for_fixed_subspaces():
    head = GrassmannHead(8, 3, 2, seed=0)
    with torch.no_grad():
        head.subspaces.mul_(3.0)
    head.eval()
    head(torch.randn(2, 8))  # eval: no check, no warning
    fixed = GrassmannHead(8, 3, 2, seed=0, trainable=False)
    fixed.subspaces.mul_(3.0)
    fixed(torch.randn(2, 8))
    head.train()
    with pytest.warns(
        RuntimeWarning, match=r"max \|S\^T S - I\| = 8 for class \d after 1 training"
    ):
        head(torch.randn(2, 8))
    ok = GrassmannHead(8, 3, 2, seed=0)
    checks = []
    for _ in range(20):
        before = ok._next_check
        ok(torch.randn(2, 8))
        if ok._next_check != before:
            checks.append(ok._forward_calls)
    assert checks == [1, 2, 4, 8, 16]


def test_load_state_dict_refuses_non_orthonormal_subspaces_and_keeps_the_old_ones():
    source = nn.Sequential(nn.Linear(4, 8), GrassmannHead(8, 3, 2, seed=0))
    target = nn.Sequential(nn.Linear(4, 8), GrassmannHead(8, 3, 2, seed=1))
    state = source.state_dict()
    state["1.subspaces"] = state["1.subspaces"].clone()
    state["1.subspaces"][2] *= 1.5
    before = target[1].subspaces.detach().clone()
    with pytest.raises(RuntimeError, match=r"1\.subspaces must hold orthonormal bases.*class 2"):
        target.load_state_dict(state)
    assert torch.equal(target[1].subspaces.detach(), before)
    state["1.subspaces"] = source[1].subspaces.detach() + 1e-6  # rounding-level: accepted
    target.load_state_dict(state)
    mixed = GrassmannHead(8, 3, [1, 2, 2], seed=0)
    bad = mixed.state_dict()
    bad["subspaces_k2"] = torch.zeros_like(bad["subspaces_k2"])
    with pytest.raises(RuntimeError, match=r"subspaces_k2 must hold orthonormal bases.*class 1"):
        mixed.load_state_dict(bad)


def test_load_state_dict_with_assign_keeps_the_subspaces_on_the_manifold():
    """A head built on the meta device and filled by load_state_dict(assign=True) (the way
    large models are materialised) must keep ManifoldParameters: a plain nn.Parameter would be
    stepped as a Euclidean parameter by GCRSGD and geoopt alike."""
    from grassmann.optim import GCRSGD

    source = GrassmannHead(8, 4, 3, seed=0)
    with torch.device("meta"):
        target = GrassmannHead(8, 4, 3, seed=1)
    target.load_state_dict(source.state_dict(), assign=True)
    for (_, _, a), (_, _, b) in zip(
        target.subspace_groups(), source.subspace_groups(), strict=True
    ):
        assert isinstance(a, geoopt.ManifoldParameter) and isinstance(a.manifold, Grassmann)
        assert a.requires_grad and torch.equal(a, b)
    opt = GCRSGD(target.parameters(), lr=0.5, momentum=0.9)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(target(x), y).backward()
        opt.step()
    assert all(_orth_error(b) < 1e-5 for _, _, b in target.subspace_groups())


@pytest.mark.parametrize("how", ["to_empty", "assign"])
def test_a_head_materialised_from_the_meta_device_puts_the_logits_in_class_order(how):
    """With a dimension per class the logits are put back in class order by a buffer that the
    state_dict does not hold; after to_empty() it held uninitialised memory (wrong classes or
    an index error), after assign=True it stayed on the meta device."""
    dims = [2, 3, 2, 1, 3]
    source = GrassmannHead(8, 5, dims, seed=0)
    with torch.device("meta"):
        target = GrassmannHead(8, 5, dims, seed=1)
    if how == "to_empty":
        target = target.to_empty(device="cpu")
        target.load_state_dict(source.state_dict())
    else:
        target.load_state_dict(source.state_dict(), assign=True)
    x = torch.randn(6, 8)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)
