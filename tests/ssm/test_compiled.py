"""Compiled sequential filter/smoother (numba) against the reference torch recursions.

The reference is the plain-torch sequential filter, differentiated by autograd; the compiled
filter's gradients come from a hand-derived adjoint, so this also checks that derivation.
"""

from __future__ import annotations

import pytest
import torch

from workbench.kernels import HidaMaternKernel, MaternKernel
from workbench.ssm import kalman_filter, rts_smoother
from workbench.ssm.fast import compiled_available, compiled_kalman_filter, compiled_rts_smoother

pytestmark = pytest.mark.skipif(
    not compiled_available(torch.zeros((), dtype=torch.float64)), reason="numba unavailable"
)


def _problem(T=60, batch=(2,), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 10).values
    y = torch.randn(*batch, T, generator=g, dtype=torch.float64)
    mask = torch.rand(*batch, T, generator=g) > 0.3
    return x, y, mask


def _run(fn, x, y, mask, make):
    kernel = make().double()
    A, Q = kernel.discretize(x.diff())
    sde = kernel.sde()
    d = sde.Pinf.diagonal().rsqrt()
    A, Q = d[:, None] * A / d, d[:, None] * Q * d
    noise = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    yy = y.clone().requires_grad_(True)
    out = fn(A, Q, sde.H / d, yy, noise, mask, d[:, None] * sde.Pinf * d)
    weights = torch.linspace(0.5, 1.5, out.log_marginal.numel(), dtype=torch.float64)
    (out.log_marginal.reshape(-1) * weights).sum().backward()
    grads = [p.grad for p in kernel.parameters()] + [noise.grad, yy.grad]
    return out, grads, A.detach()


KERNELS = [
    lambda: MaternKernel(nu=0.5, lengthscale=0.5),
    lambda: MaternKernel(nu=3.5, lengthscale=2.0),
    lambda: HidaMaternKernel(order=2, frequency=1.3) + MaternKernel(nu=1.5, lengthscale=0.4),
]


@pytest.mark.parametrize("make", KERNELS)
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_compiled_filter_values_and_gradients_equal_reference(make, batch):
    x, y, mask = _problem(batch=batch)
    ref, ref_grads, A = _run(kalman_filter, x, y, mask, make)
    out, grads, _ = _run(compiled_kalman_filter, x, y, mask, make)
    for name, a, b in zip(ref._fields, ref, out, strict=True):
        torch.testing.assert_close(b, a.detach(), rtol=0, atol=1e-11, msg=name)
    for a, b in zip(ref_grads, grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)
    smooth_ref = rts_smoother(A, ref)
    smooth = compiled_rts_smoother(A, out)
    torch.testing.assert_close(smooth.mean, smooth_ref.mean.detach(), rtol=0, atol=1e-11)
    torch.testing.assert_close(smooth.cov, smooth_ref.cov.detach(), rtol=0, atol=1e-11)


def test_shared_transitions_by_index_equal_expanded():
    T = 40
    x = torch.arange(T, dtype=torch.float64) * 0.25
    y = torch.sin(x)[None]
    mask = torch.ones(1, T, dtype=torch.bool)
    kernel = MaternKernel(nu=2.5).double()
    steps, which = torch.unique(x.diff(), return_inverse=True)
    A, Q = kernel.discretize(steps)
    sde = kernel.sde()
    R = torch.tensor(0.1, dtype=torch.float64)
    shared = compiled_kalman_filter(A, Q, sde.H, y, R, mask, sde.Pinf, which)
    (grad_shared,) = torch.autograd.grad(shared.log_marginal.sum(), kernel.raw_lengthscale)
    A, Q = kernel.discretize(x.diff())
    sde = kernel.sde()
    full = compiled_kalman_filter(A, Q, sde.H, y, R, mask, sde.Pinf)
    (grad_full,) = torch.autograd.grad(full.log_marginal.sum(), kernel.raw_lengthscale)
    assert steps.numel() < T - 1
    torch.testing.assert_close(shared.log_marginal, full.log_marginal, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_shared, grad_full, rtol=1e-12, atol=1e-12)


def test_mask_and_noise_broadcast_over_leading_batch_dims():
    x, y, mask = _problem(T=30, batch=(3,))
    kernel = MaternKernel(nu=1.5).double().requires_grad_(False)
    A, Q = kernel.discretize(x.diff())
    sde = kernel.sde()
    noise = torch.linspace(0.05, 0.2, 30, dtype=torch.float64).expand(3, 30)
    y4 = y.expand(4, 3, 30)  # mask and noise are (3, T): broadcast over the leading 4
    out = compiled_kalman_filter(A, Q, sde.H, y4, noise, mask, sde.Pinf)
    ref = kalman_filter(A, Q, sde.H, y, noise, mask, sde.Pinf)
    for b in range(4):
        torch.testing.assert_close(out.mean[b], ref.mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(out.log_marginal[b], ref.log_marginal, rtol=0, atol=1e-12)
