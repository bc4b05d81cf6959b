"""Every state-space kernel passes the contract; constructor and composition behaviour."""

from __future__ import annotations

import json

import gpytorch
import pytest
import torch

import workbench as wb
from workbench.kernels import HidaMaternKernel, MaternKernel, StateSpaceSum
from workbench.testing import StateSpaceKernelContract


@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5, 3.5, 4.5])
class TestMatern(StateSpaceKernelContract):
    @pytest.fixture(autouse=True)
    def _nu(self, nu):
        self.nu = nu

    def create_kernel(self):
        return MaternKernel(nu=self.nu, lengthscale=0.8, outputscale=1.7)


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4])
class TestHidaMatern(StateSpaceKernelContract):
    @pytest.fixture(autouse=True)
    def _order(self, order):
        self.order = order

    def create_kernel(self):
        return HidaMaternKernel(order=self.order, lengthscale=1.1, frequency=2.3, outputscale=0.6)


class TestSum(StateSpaceKernelContract):
    def create_kernel(self):
        return (
            HidaMaternKernel(order=1, lengthscale=2.0, frequency=1.0)
            + MaternKernel(nu=2.5, lengthscale=0.5, outputscale=0.3)
            + MaternKernel(nu=0.5, lengthscale=1.5)
        )


def test_hida_matern_with_zero_frequency_is_matern():
    tau = torch.linspace(-3, 3, 31, dtype=torch.float64)
    for p in range(4):
        hm = HidaMaternKernel(order=p, lengthscale=0.9, outputscale=2.0).double()
        m = MaternKernel(nu=p + 0.5, lengthscale=0.9, outputscale=2.0).double()
        torch.testing.assert_close(hm.covariance(tau), m.covariance(tau), rtol=1e-14, atol=0)


def test_matern_covariance_matches_gpytorch():
    x = torch.linspace(0, 4, 9, dtype=torch.float64)[:, None]
    for nu in (0.5, 1.5, 2.5):
        ours = MaternKernel(nu=nu, lengthscale=0.7).double()
        ref = gpytorch.kernels.MaternKernel(nu=nu).double()
        ref.lengthscale = torch.tensor(0.7, dtype=torch.float64)
        torch.testing.assert_close(
            ours(x, x).to_dense(), ref(x, x).to_dense(), rtol=1e-6, atol=1e-6
        )


def test_process_noise_stays_positive_definite_at_tiny_steps():
    # P_inf - A P_inf A^T loses its smallest eigenvalues here; the closed form does not
    k = MaternKernel(nu=2.5, lengthscale=1.0).double()
    _, Q = k.discretize(torch.tensor([1e-4], dtype=torch.float64))
    d = Q[0].diagonal().rsqrt()
    assert torch.linalg.eigvalsh(d[:, None] * Q[0] * d).min() > 0


def test_sums_flatten_and_stay_state_space():
    k = MaternKernel() + MaternKernel(nu=0.5) + HidaMaternKernel(order=0)
    assert isinstance(k, StateSpaceSum) and len(k.kernels) == 3
    assert k.state_dim == 2 + 1 + 2
    mixed = MaternKernel() + gpytorch.kernels.RBFKernel()
    assert isinstance(mixed, gpytorch.kernels.AdditiveKernel)


def test_parameters_are_exposed_and_validated():
    k = HidaMaternKernel(order=2, lengthscale=0.5, frequency=3.0, outputscale=2.0)
    assert k.lengthscale.item() == pytest.approx(0.5)
    assert k.frequency.item() == pytest.approx(3.0)
    k.lengthscale = 4.0
    assert k.lengthscale.item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="lengthscale > 0"):
        k.lengthscale = -1.0
    with pytest.raises(ValueError, match="half-integer nu"):
        MaternKernel(nu=2.0)
    with pytest.raises(ValueError, match="order"):
        HidaMaternKernel(order=7)
    with pytest.raises(TypeError, match="state-space kernels"):
        StateSpaceSum(MaternKernel())


def test_specs_round_trip():
    k = HidaMaternKernel(order=3, frequency=1.0) + MaternKernel(nu=4.5)
    spec = wb.kernels.kernel_to_spec(k)
    rebuilt = wb.kernels.kernel_from_spec(json.loads(json.dumps(spec)))
    rebuilt.load_state_dict(k.state_dict())
    tau = torch.linspace(0, 3, 7)
    torch.testing.assert_close(rebuilt.covariance(tau), k.covariance(tau), rtol=0, atol=0)
