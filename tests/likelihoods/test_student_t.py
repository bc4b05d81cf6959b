"""Student-t likelihood: density against scipy, Gauss-Hermite expectation against Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from workbench.likelihoods import StudentT, likelihood_from_spec, likelihood_to_spec


def test_log_density_equals_scipy():
    like = StudentT(df=3.5, scale=0.7).double()
    y = torch.linspace(-4, 4, 9, dtype=torch.float64)
    f = torch.full_like(y, 0.3)
    expected = scipy.stats.t(df=3.5, loc=0.3, scale=0.7).logpdf(y.numpy())
    np.testing.assert_allclose(like.log_prob(y, f).detach().numpy(), expected, rtol=1e-12)


def test_expectation_matches_monte_carlo():
    like = StudentT(df=4.0, scale=0.5).double()
    y = torch.tensor([0.0, 2.0, -3.0], dtype=torch.float64)
    mean = torch.tensor([0.1, 1.0, 0.5], dtype=torch.float64)
    var = torch.tensor([0.04, 0.5, 1.5], dtype=torch.float64)
    value = like.expected_log_prob(y, mean, var).value
    gen = torch.Generator().manual_seed(0)
    f = mean + var.sqrt() * torch.randn(200_000, 3, generator=gen, dtype=torch.float64)
    draws = like.log_prob(y, f).detach()
    se = draws.std(0) / np.sqrt(200_000)
    assert torch.all((value - draws.mean(0)).abs() < 5 * se), (value, draws.mean(0), se)


def test_spec_round_trip_and_bad_arguments():
    like = likelihood_from_spec(likelihood_to_spec(StudentT(df=3.0)))
    assert isinstance(like, StudentT)
    with pytest.raises(ValueError, match="df > 2"):
        StudentT(df=2.0)
