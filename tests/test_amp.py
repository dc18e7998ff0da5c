"""Mixed precision: autocast (bf16 on the CPU, fp16 on CUDA) with torch.amp.GradScaler.

GradScaler multiplies the loss by its scale (65536 here) and must divide the gradients by it
before any optimiser, Riemannian or not, uses them. ``scaler.step(opt)`` does that for every
parameter in ``opt.param_groups``; the official GCR AdamW wrapper keeps its inner Riemannian
optimiser outside of them, so the subspaces get 65536x the gradient. These tests check that the
optimisers of this package always step with unscaled gradients.
"""

from __future__ import annotations

import geoopt
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grassmann import GrassmannHead, orthonormalize, principal_angles
from grassmann.optim import GCRSGD, CombinedOptimizer, param_groups, split_parameters
from tests.test_heads import _one_cpu_thread  # noqa: F401  (autouse: one CPU thread)


def _max_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest principal angle between float32 bases (re-orthonormalised in float64)."""
    a, b = (orthonormalize(t.detach().double()) for t in (a, b))
    return float(principal_angles(a, b).max())


def _low(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cpu" else torch.float16


def _model(device):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(10, 16), nn.ReLU(), GrassmannHead(16, 5, [3, 3, 2, 2, 1], seed=0)
    ).to(device)


OPTIMIZERS = {
    "gcrsgd": lambda m: GCRSGD(param_groups(m, 1e-4), lr=0.02, momentum=0.9),
    "adamw+gcrsgd": lambda m: CombinedOptimizer(
        torch.optim.AdamW(split_parameters(m).groups(0.05, manifold=False), lr=1e-2),
        GCRSGD(split_parameters(m).manifold, lr=1e-2, momentum=0.9, reorth_every=1, lr_factor=0.3),
    ),
    "geoopt-rsgd": lambda m: geoopt.optim.RiemannianSGD(
        param_groups(m, 1e-4), lr=0.2, momentum=0.9
    ),
}


def _run(device, make_opt, scale: float | None, steps: int = 4):
    model = _model(device)
    opt = make_opt(model)
    scaler = (
        torch.amp.GradScaler(device.type, init_scale=scale, growth_interval=10**6)
        if scale is not None
        else None
    )
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(64, 10, generator=g).to(device)
        y = torch.randint(0, 5, (64,), generator=g).to(device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=_low(device)):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    return model


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_grad_scaler_steps_the_subspaces_with_unscaled_gradients(device, name):
    plain = _run(device, OPTIMIZERS[name], scale=None)
    scaled = _run(device, OPTIMIZERS[name], scale=65536.0)
    start = _model(device)[2]
    for (k, _, a), (_, _, b), (_, _, s0) in zip(
        plain[2].subspace_groups(),
        scaled[2].subspace_groups(),
        start.subspace_groups(),
        strict=True,
    ):
        # bf16 keeps float32's exponent range: scaling by 2^16 is exact, so are the steps
        tol = 1e-6 if device.type == "cpu" else 1e-3
        torch.testing.assert_close(b, a, rtol=0, atol=tol)
        assert _max_angle(s0, b) > 1e-4, k  # the subspaces did train
    for pa, pb in zip(plain[0].parameters(), scaled[0].parameters(), strict=True):
        torch.testing.assert_close(pb, pa, rtol=0, atol=1e-6 if device.type == "cpu" else 1e-3)


def test_an_inner_step_outside_the_scaler_moves_the_subspaces_far(device):
    """The control: stepping the inner GCRSGD by hand (as the official AdamW wrapper does)
    hands it the scaled gradients, and one step moves the subspaces by radians."""
    model = _model(device)
    split = split_parameters(model)
    outer = torch.optim.AdamW(split.groups(0.05, manifold=False), lr=1e-2)
    inner = GCRSGD(split.manifold, lr=1e-2, momentum=0.9, reorth_every=1, lr_factor=0.3)
    scaler = torch.amp.GradScaler(device.type, init_scale=65536.0)
    start = [b.detach().clone() for _, _, b in model[2].subspace_groups()]
    x, y = torch.randn(64, 10, device=device), torch.randint(0, 5, (64,), device=device)
    with torch.autocast(device.type, dtype=_low(device)):
        loss = F.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(outer)
    inner.step()  # scaled gradients
    moved = max(
        _max_angle(s0, b) for s0, (_, _, b) in zip(start, model[2].subspace_groups(), strict=True)
    )
    assert moved > 0.5


def test_a_non_finite_gradient_skips_every_part_of_a_combined_optimizer(device):
    model = _model(device)
    opt = OPTIMIZERS["adamw+gcrsgd"](model)
    scaler = torch.amp.GradScaler(device.type, init_scale=65536.0)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(8, 10, device=device), torch.randint(0, 5, (8,), device=device)
    with torch.autocast(device.type, dtype=_low(device)):
        loss = F.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    model[0].bias.grad[0] = float("inf")  # an overflow in the backbone
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 32768.0
    for p, p0 in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), p0)
