"""Tests of grassmann.optim: the exact GCR update, the combined optimiser, parameter groups."""

from __future__ import annotations

import copy

import geoopt
import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from grassmann import Grassmann, GrassmannHead, principal_angles
from grassmann.optim import (
    GCRSGD,
    CombinedOptimizer,
    gcr_geodesic_step,
    param_groups,
    split_parameters,
)
from grassmann.stiefel import _qr_signfix
from tests.test_heads import _one_cpu_thread  # noqa: F401  (autouse: one CPU thread)
from tests.test_manifold import orth_err


def _orth_error(s: torch.Tensor) -> float:
    return orth_err(s.detach().double())


# ---------------------------------------------------------------------------------------------
# the update rule against an independent implementation
# ---------------------------------------------------------------------------------------------


def _eigen_problem(c: int, n: int, seed: int) -> np.ndarray:
    """``c`` symmetric ``n x n`` matrices: the loss ``-sum_i tr(X_i^T A_i X_i)`` has the closed-form
    Euclidean gradient ``-2 A_i X_i``."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((c, n, n))
    return (a + a.transpose(0, 2, 1)) / 2


def _reference_gcr(x0, a, steps, lr, momentum, reorth_every):
    """The GCR rule written plainly, class by class, in numpy float64: Euclidean momentum buffer
    (B_1 = G_1, B_t = m B_{t-1} + G_t), its projection at the current point, the geodesic by the
    n x k SVD of the step (EAS 1998 Thm 2.3), and QR with positive diag(R) at steps 1, 1 + r, ..."""
    x = [xi.copy() for xi in x0]
    buf = [None] * len(x)
    for t in range(1, steps + 1):
        for i in range(len(x)):
            g = -2.0 * a[i] @ x[i]
            buf[i] = g.copy() if buf[i] is None else momentum * buf[i] + g
            h = buf[i] - x[i] @ (x[i].T @ buf[i])
            p, sig, vt = np.linalg.svd(-lr * h, full_matrices=False)
            x_new = x[i] @ vt.T @ np.diag(np.cos(sig)) @ vt + p @ np.diag(np.sin(sig)) @ vt
            if (t - 1) % reorth_every == 0:
                q, r = np.linalg.qr(x_new)
                x_new = q * np.where(np.diag(r) < 0, -1.0, 1.0)
            x[i] = x_new
    return x


@pytest.mark.parametrize("reorth_every", [5, 1])
def test_100_float64_momentum_steps_agree_with_the_plain_rule_to_1e10_in_principal_angles(
    reorth_every,
):
    c, n, k, steps = 6, 12, 3, 100
    a = _eigen_problem(c, n, seed=1)
    man = Grassmann()
    x0 = man.random(c, n, k, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = geoopt.ManifoldParameter(x0.clone(), manifold=man)
    a_t = torch.from_numpy(a)
    # lr 0.025 x lr_factor 2 = a step length of 0.05 on the subspaces
    opt = GCRSGD([x], lr=0.025, momentum=0.9, reorth_every=reorth_every, lr_factor=2.0)
    moved = 0.0
    for _ in range(steps):
        opt.zero_grad()
        (-torch.einsum("cij,cik,ckj->", x, a_t, x)).backward()
        opt.step()
    ref = _reference_gcr(x0.numpy(), a, steps, lr=0.05, momentum=0.9, reorth_every=reorth_every)
    for i in range(c):
        angles = scipy.linalg.subspace_angles(x.detach()[i].numpy(), ref[i])
        assert angles.max() < 1e-10
        moved = max(moved, scipy.linalg.subspace_angles(x0[i].numpy(), ref[i]).max())
    assert moved > 0.5  # the trajectories went somewhere
    assert opt.state[x]["step"] == steps
    assert opt.state[x]["momentum_buffer"].shape == x.shape
    assert _orth_error(x) < 1e-13


def test_geodesic_kernel_equals_the_svd_geodesic_of_the_projected_buffer():
    gen = torch.Generator().manual_seed(0)
    x = Grassmann().random(7, 20, 5, dtype=torch.float64, generator=gen)
    buf = torch.randn(7, 20, 5, dtype=torch.float64, generator=gen)
    for lr in (1e-4, 0.3, 2.0):
        got = gcr_geodesic_step(x, buf, lr)
        h = buf - x @ (x.mT @ buf)
        p, sig, vt = torch.linalg.svd(-lr * h, full_matrices=False)
        want = x @ vt.mT @ torch.diag_embed(sig.cos()) @ vt + p @ torch.diag_embed(sig.sin()) @ vt
        torch.testing.assert_close(got, want, rtol=0, atol=1e-13)
        assert got.mT.is_contiguous()  # column-major, the head's layout
    single = gcr_geodesic_step(x[0], buf[0], 0.3)
    torch.testing.assert_close(single, gcr_geodesic_step(x, buf, 0.3)[0], rtol=0, atol=1e-15)


def test_the_fused_reorthonormalisation_is_the_sign_fixed_qr_of_the_step():
    gen = torch.Generator().manual_seed(1)
    x = Grassmann().random(9, 30, 4, dtype=torch.float64, generator=gen)
    buf = torch.randn(9, 30, 4, dtype=torch.float64, generator=gen)
    for lr in (1e-3, 0.5):
        want = _qr_signfix(gcr_geodesic_step(x, buf, lr))
        got = gcr_geodesic_step(x, buf, lr, orthonormalize=True)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-13)
    # it removes the error of an input that drifted off the manifold (float32)
    drifted = (x * (1 + 1e-4 * torch.randn(x.shape, generator=gen, dtype=torch.float64))).float()
    assert _orth_error(drifted) > 1e-5
    assert _orth_error(gcr_geodesic_step(drifted, buf.float(), 0.1, orthonormalize=True)) < 2e-6
    # a rank-deficient result (a broken input) falls back to Householder QR
    broken = x.clone()
    broken[0, :, 1] = broken[0, :, 0]
    out = gcr_geodesic_step(broken, torch.zeros_like(buf), 0.1, orthonormalize=True)
    assert _orth_error(out) < 1e-12
    torch.testing.assert_close(out[1:], x[1:], rtol=0, atol=1e-14)


def test_reorthonormalisation_keeps_the_subspaces_and_removes_rounding_error():
    """Steps 1, 6, 11 ... end with a sign-fixed QR; in between the geodesic lets float32 rounding
    accumulate. The QR never changes the subspace (principal angles ~ 0 against no QR)."""
    torch.manual_seed(0)
    heads = [GrassmannHead(64, 20, 4, seed=0) for _ in range(2)]
    x, y = torch.randn(128, 64), torch.randint(0, 20, (128,))
    opts = [GCRSGD(heads[0].parameters(), lr=0.2, momentum=0.9, reorth_every=5)]
    opts.append(GCRSGD(heads[1].parameters(), lr=0.2, momentum=0.9, reorth_every=10**9))
    errors = []
    for _ in range(41):
        for head, opt in zip(heads, opts, strict=True):
            opt.zero_grad()
            F.cross_entropy(head(x), y).backward()
            opt.step()
        errors.append(_orth_error(heads[0].subspaces))
    assert max(errors[0::5]) < 1e-6  # right after a QR (steps 1, 6, ..., 41)
    assert _orth_error(heads[1].subspaces) > 2 * max(errors[0::5])  # QR only at step 1
    angles = principal_angles(heads[0].subspaces.detach(), heads[1].subspaces.detach())
    assert float(angles.max()) < 1e-3  # same subspaces up to float32 rounding of the paths


# ---------------------------------------------------------------------------------------------
# Euclidean parameters, weight decay, lr_factor, schedulers, state
# ---------------------------------------------------------------------------------------------


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(10, 16), nn.LayerNorm(16), nn.ReLU(), GrassmannHead(16, 5, 3, seed=seed)
    )


def _batches(steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(32, 10, generator=g), torch.randint(0, 5, (32,), generator=g))
        for _ in range(steps)
    ]


def _train(model, opt, batches, sched=None):
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()


def test_euclidean_parameters_follow_torch_sgd_exactly():
    a, b = _model(), _model()
    batches = _batches(20)
    groups_a = param_groups(a, weight_decay=1e-2)
    opt_a = GCRSGD(groups_a, lr=0.1, momentum=0.9)
    # torch SGD on the Euclidean parameters; the subspaces of b are fixed by GCRSGD with lr 0
    split = split_parameters(b)
    opt_b = CombinedOptimizer(
        torch.optim.SGD(split.groups(1e-2, manifold=False), lr=0.1, momentum=0.9),
        GCRSGD(split.manifold, lr=0.1, momentum=0.9),
    )
    _train(a, opt_a, batches)
    _train(b, opt_b, batches)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name


def test_weight_decay_never_touches_the_subspaces_and_lr_factor_scales_only_them():
    x = torch.randn(32, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (32,), generator=torch.Generator().manual_seed(1))

    def run(weight_decay, lr_factor, lr):
        head = GrassmannHead(16, 5, 3, seed=0, dtype=torch.float64)
        extra = nn.Parameter(torch.ones(4, dtype=torch.float64))  # a Euclidean parameter
        opt = GCRSGD(
            [head.subspaces, extra],
            lr=lr,
            momentum=0.9,
            weight_decay=weight_decay,
            lr_factor=lr_factor,
        )
        for _ in range(10):
            opt.zero_grad()
            (F.cross_entropy(head(x), y) + extra.square().sum()).backward()
            opt.step()
        return head.subspaces.detach(), extra.detach()

    s_base, e_base = run(0.0, 1.0, 0.1)
    s_decay, e_decay = run(0.5, 1.0, 0.1)
    s_factor, e_factor = run(0.0, 2.0, 0.05)
    assert torch.equal(s_base, s_decay)  # no weight decay on the subspaces, at any step
    assert not torch.allclose(e_base, e_decay)  # but on the Euclidean parameter
    assert torch.equal(s_base, s_factor)  # 0.05 x 2 = 0.1: the same subspace steps
    # lr_factor does not apply to the Euclidean parameter: torch SGD at lr 0.05
    e = nn.Parameter(torch.ones(4, dtype=torch.float64))
    sgd = torch.optim.SGD([e], lr=0.05, momentum=0.9)
    for _ in range(10):
        sgd.zero_grad()
        e.square().sum().backward()
        sgd.step()
    assert torch.equal(e_factor, e.detach())


def test_schedulers_drive_both_parts_and_the_subspace_step_is_lr_t_times_lr_factor():
    model = _model()
    split = split_parameters(model)
    inner = GCRSGD(split.manifold, lr=0.1, momentum=0.0, lr_factor=0.3, reorth_every=10**9)
    opt = CombinedOptimizer(torch.optim.AdamW(split.groups(0.05, manifold=False), lr=0.1), inner)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    head = model[3]
    for t, (x, y) in enumerate(_batches(3)):
        s0 = head.subspaces.detach().double().clone()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        g = head.subspaces.grad.detach().double().clone()
        opt.step()
        want = gcr_geodesic_step(s0, g, 0.1 * 0.5**t * 0.3)
        torch.testing.assert_close(head.subspaces.detach().double(), want, rtol=0, atol=1e-5)
        sched.step()
        assert all(g["lr"] == pytest.approx(0.1 * 0.5 ** (t + 1)) for g in opt.param_groups)
    assert opt.optimizers[0].param_groups[0]["lr"] == inner.param_groups[0]["lr"]


def test_state_dict_round_trip_continues_identically():
    batches = _batches(12)
    ref = _model()
    split = split_parameters(ref)

    def make(m):
        s = split_parameters(m)
        return CombinedOptimizer(
            torch.optim.AdamW(s.groups(0.05, manifold=False), lr=1e-2),
            GCRSGD(s.manifold, lr=1e-2, momentum=0.9, lr_factor=0.2, reorth_every=3),
        )

    opt = make(ref)
    _train(ref, opt, batches)
    assert len(split.manifold) == 1

    first = _model()
    opt1 = make(first)
    _train(first, opt1, batches[:7])
    saved_model, saved_opt = copy.deepcopy(first.state_dict()), copy.deepcopy(opt1.state_dict())
    second = _model(seed=5)
    second.load_state_dict(saved_model)
    opt2 = make(second)
    opt2.load_state_dict(saved_opt)
    assert opt2.state[second[3].subspaces]["step"] == 7
    _train(second, opt2, batches[7:])
    for pa, pb in zip(ref.parameters(), second.parameters(), strict=True):
        assert torch.equal(pa, pb)


# ---------------------------------------------------------------------------------------------
# how geoopt's optimisers differ (documented in docs/heads.rst)
# ---------------------------------------------------------------------------------------------


def test_geoopt_rsgd_first_momentum_step_is_one_plus_m_times_the_gradient_gcrsgd_is_one():
    for opt_cls in (GCRSGD, geoopt.optim.RiemannianSGD):
        w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
        opt = opt_cls([w], lr=1.0, momentum=0.9)
        w.grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        opt.step()
        factor = 1.9 if opt_cls is geoopt.optim.RiemannianSGD else 1.0
        torch.testing.assert_close(w.detach(), -factor * torch.tensor([1.0, -2.0, 0.5]).double())


# ---------------------------------------------------------------------------------------------
# parameter groups
# ---------------------------------------------------------------------------------------------


def test_split_parameters_puts_weights_norms_biases_and_subspaces_apart():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.Flatten(),
        shared,
        shared,  # shared: listed once
        nn.LayerNorm(4),
        GrassmannHead(4, 3, 2, seed=0),
    )
    model[0].bias.requires_grad_(False)  # frozen: left out
    split = split_parameters(model)
    names = lambda ps: [split.names[p] for p in ps]  # noqa: E731
    assert names(split.decay) == ["0.weight", "3.weight"]
    assert names(split.no_decay) == ["1.weight", "1.bias", "3.bias", "5.weight", "5.bias"]
    assert names(split.manifold) == ["6.subspaces"]
    groups = split.groups(5e-4, lr_factor=0.2)
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0, 0.0]
    assert groups[2]["lr_factor"] == 0.2 and "lr_factor" not in groups[0]
    euclid = split.groups(5e-4, manifold=False)
    assert len(euclid) == 2 and all(
        not isinstance(p, geoopt.ManifoldParameter) for g in euclid for p in g["params"]
    )
    for opt, count in (
        (GCRSGD(groups, lr=0.1, momentum=0.9), 8),
        (geoopt.optim.RiemannianSGD(param_groups(model, 5e-4), lr=0.1, momentum=0.9), 8),
        (geoopt.optim.RiemannianAdam(param_groups(model, 5e-4), lr=1e-3), 8),
        (torch.optim.AdamW(param_groups(model, 5e-2, manifold=False), lr=1e-3), 7),
    ):
        assert sum(len(g["params"]) for g in opt.param_groups) == count
    custom = split_parameters(model, no_decay=lambda name, p, m: name.startswith("0."))
    assert [custom.names[p] for p in custom.no_decay] == ["0.weight"]


def test_group_and_argument_errors_name_the_argument():
    head = GrassmannHead(8, 3, 2, seed=0)
    for kwargs, match in (
        ({"lr": -1.0}, "lr must be >= 0"),
        ({"lr": 0.1, "momentum": 1.0}, "momentum must be < 1"),
        ({"lr": 0.1, "reorth_every": 0}, "reorth_every must be >= 1"),
        ({"lr": 0.1, "lr_factor": 0.0}, "lr_factor must be > 0"),
        ({"lr": 0.1, "weight_decay": -1e-3}, "weight_decay must be >= 0"),
    ):
        with pytest.raises(ValueError, match=match):
            GCRSGD(head.parameters(), **kwargs)
    with pytest.raises(ValueError, match=r"param_groups\[1\]: momentum must be < 1"):
        GCRSGD(
            [
                {"params": [nn.Parameter(torch.zeros(2))]},
                {"params": [head.subspaces], "momentum": 2.0},
            ],
            lr=0.1,
        )
    sphere = geoopt.ManifoldParameter(torch.tensor([1.0, 0.0]), manifold=geoopt.Sphere())
    with pytest.raises(
        ValueError, match=r"parameter 0 of param_groups\[0\] lives on Sphere.*RiemannianSGD"
    ):
        GCRSGD([sphere], lr=0.1)
    with pytest.raises(TypeError, match="lr must be a real number"):
        GCRSGD(head.parameters(), lr="0.1")
    with pytest.raises(ValueError, match="at least 2 optimizers"):
        CombinedOptimizer(GCRSGD(head.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"in optimizers\[0\] and optimizers\[1\]"):
        CombinedOptimizer(GCRSGD(head.parameters(), lr=0.1), GCRSGD(head.parameters(), lr=0.1))
    with pytest.raises(TypeError, match=r"optimizers\[1\] must be a torch.optim.Optimizer"):
        CombinedOptimizer(GCRSGD(head.parameters(), lr=0.1), "adamw")
    combined = CombinedOptimizer(
        GCRSGD(head.parameters(), lr=0.1), torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1)
    )
    with pytest.raises(TypeError, match="add the group to one of its parts"):
        combined.add_param_group({"params": [nn.Parameter(torch.zeros(1))]})
    with pytest.raises(ValueError, match="CombinedOptimizer of 2 parts"):
        combined.load_state_dict({"state": {}, "param_groups": []})
    with pytest.raises(ValueError, match="manifold options"):
        split_parameters(head).groups(0.0, manifold=False, lr_factor=0.1)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        split_parameters([head.subspaces])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_series_for_cos_and_sinc_of_sqrt_is_accurate_for_every_matrix_of_a_batch(device, dtype):
    """The k x k functions (on the CPU: Taylor series with scaling and squaring; on CUDA: the
    eigendecomposition) for steps from 1e-8 to 20 rad in one batch, against mpmath at 40
    digits on matrices across the range. Each must be accurate to a few units of
    u max(1, ||M||): a batch-wide scaling made the smallest steps as inaccurate as the largest
    (2000 u in float64). float64's own eigh is off by up to ~7 u here, hence mpmath."""
    import math

    mpmath = pytest.importorskip("mpmath")
    from grassmann.optim.gcr import _cos_sinc_of_sqrt

    gen = torch.Generator().manual_seed(4)
    a = torch.randn(300, 6, 6, dtype=torch.float64, generator=gen)
    m = a @ a.mT
    radius = torch.logspace(-16, math.log10(400.0), 300, dtype=torch.float64)  # angle^2
    m = (m / torch.linalg.matrix_norm(m, ord=2)[:, None, None] * radius[:, None, None]).to(dtype)
    cos_m, sinc_m = (t.cpu().double() for t in _cos_sinc_of_sqrt(m.to(device)))
    unit = torch.finfo(dtype).eps / 2
    with mpmath.workdps(40):
        for i in range(0, 300, 23):
            lam, vecs = mpmath.eigsy(mpmath.matrix(m[i].double().tolist()))
            sigma = [mpmath.sqrt(max(v, 0)) for v in lam]
            for got, f in (
                (cos_m[i], mpmath.cos),
                (sinc_m[i], lambda t: mpmath.sin(t) / t if t else mpmath.mpf(1)),
            ):
                want = vecs * mpmath.diag([f(t) for t in sigma]) * vecs.T
                err = max(abs(float(got[r, c]) - want[r, c]) for r in range(6) for c in range(6))
                assert err <= 16 * unit * max(1.0, float(radius[i])), (i, float(radius[i]), err)


def test_sparse_euclidean_gradients_follow_torch_sgd_and_a_sparse_subspace_gradient_is_named():
    """torch.optim.SGD takes the sparse gradients of nn.Embedding(sparse=True); so must the
    Euclidean side of GCRSGD, which promises to be torch's SGD there."""
    torch.manual_seed(0)
    embs = [nn.Embedding(20, 6, sparse=True) for _ in range(2)]
    embs[1].load_state_dict(embs[0].state_dict())
    opts = [
        GCRSGD(embs[0].parameters(), lr=0.1, momentum=0.9),
        torch.optim.SGD(embs[1].parameters(), lr=0.1, momentum=0.9),
    ]
    for step in range(3):
        idx = torch.tensor([step, 3, 7 + step])
        for emb, opt in zip(embs, opts, strict=True):
            opt.zero_grad()
            emb(idx).square().sum().backward()
            opt.step()
    assert torch.equal(embs[0].weight, embs[1].weight)
    head = GrassmannHead(8, 3, 2, seed=0)
    opt = GCRSGD(
        [{"params": [nn.Parameter(torch.zeros(1))]}, {"params": head.parameters()}], lr=0.1
    )
    head.subspaces.grad = torch.ones_like(head.subspaces).to_sparse()
    with pytest.raises(RuntimeError, match=r"parameter 0 of param_groups\[1\].*sparse gradient"):
        opt.step()


def test_one_cycle_schedules_the_momentum_of_every_part_when_they_share_its_name():
    """OneCycleLR looks for "momentum" or "betas" in optimizer.defaults; the combined optimizer
    had none, so it refused SGD + GCRSGD, whose groups all have "momentum"."""
    model = _model()
    split = split_parameters(model)
    opt = CombinedOptimizer(
        torch.optim.SGD(split.groups(1e-4, manifold=False), lr=0.1, momentum=0.9),
        GCRSGD(split.manifold, lr=0.1, momentum=0.9),
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    _train(model, opt, _batches(3), sched)
    momenta = {g["momentum"] for g in opt.param_groups}
    assert len(momenta) == 1 and 0.85 < momenta.pop() < 0.95  # cycled, in every part
    mixed = CombinedOptimizer(
        torch.optim.AdamW(split.groups(0.05, manifold=False), lr=1e-3),
        GCRSGD(split.manifold, lr=1e-3, momentum=0.9),
    )
    assert "momentum" not in mixed.defaults and "betas" not in mixed.defaults
    torch.optim.lr_scheduler.OneCycleLR(mixed, max_lr=0.1, total_steps=10, cycle_momentum=False)


def test_a_refused_param_group_is_not_kept():
    """add_param_group used to append the group before checking it: after the error the
    optimiser held a group with momentum 2 (or a Sphere parameter) and stepped it."""
    w = nn.Parameter(torch.zeros(2))
    opt = GCRSGD([w], lr=0.1)
    extra = nn.Parameter(torch.zeros(3))
    sphere = geoopt.ManifoldParameter(torch.tensor([1.0, 0.0]), manifold=geoopt.Sphere())
    for group, error in (
        ({"params": [extra], "momentum": 2.0}, ValueError),
        ({"params": [extra], "lr": "fast"}, TypeError),
        ({"params": [sphere]}, ValueError),
    ):
        with pytest.raises(error):
            opt.add_param_group(group)
        assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [extra], "momentum": 0.5})  # the parameter is still free
    assert len(opt.param_groups) == 2
