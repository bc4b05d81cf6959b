"""Oracle checks on a CUDA device (skipped on CPU-only machines; see tests/conftest.py).

The state-space model on the GPU takes the parallel-scan path by default and must agree with
the CPU results in float64; seeded draws must not depend on the device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.kernels import MaternKernel
from workbench.models.regression_samples import posterior_draws

pytestmark = pytest.mark.gpu


def _series() -> xr.DataArray:
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 10, 400))
    y = np.sin(t) + 0.1 * rng.normal(size=400)
    y[100:130] = np.nan
    return xr.DataArray(y, dims="time", coords={"time": t})


def _model() -> wb.MarkovGP:
    return wb.MarkovGP(MaternKernel(nu=2.5, lengthscale=1.3), noise=0.02)


def test_markov_gp_on_cuda_matches_cpu_and_uses_parallel_scans():
    da = _series()
    cpu = _model()
    gpu = _model().to("cuda")
    assert gpu._use_scans() and not cpu._use_scans()
    expected, got = cpu.posterior(da), gpu.posterior(da)
    np.testing.assert_allclose(got["mean"], expected["mean"], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(got["variance"], expected["variance"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(
        gpu.log_marginal_likelihood(da), cpu.log_marginal_likelihood(da), rtol=1e-10
    )


def test_fit_on_cuda_follows_the_cpu_fit():
    da = _series()
    cpu = _model().fit(da, steps=5, progress=False)
    gpu = _model().to("cuda").fit(da, steps=5, progress=False)
    for name, value in cpu.hyperparameters().items():
        assert gpu.hyperparameters()[name] == pytest.approx(value, rel=1e-6), name


def test_seeded_draws_are_the_same_on_both_devices():
    da = _series()
    cpu, gpu = _model(), _model().to("cuda")
    draws = [
        posterior_draws(m, m._observe(da, "time"), 8, torch.Generator().manual_seed(3)).cpu()
        for m in (cpu, gpu)
    ]
    torch.testing.assert_close(draws[1], draws[0], rtol=1e-7, atol=1e-9)
