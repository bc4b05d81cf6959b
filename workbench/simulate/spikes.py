"""Simulated population recordings: Poisson spike counts driven by known smooth latents."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from workbench.simulate.dynamics import integrate, lorenz, van_der_pol

__all__ = ["latent_spikes"]

_SYSTEMS = {"van_der_pol": (van_der_pol, 2, 0.15), "lorenz": (lorenz, 3, 0.01)}


def latent_spikes(
    n_units: int = 50,
    n_latents: int = 2,
    n_trials: int = 10,
    n_bins: int = 500,
    *,
    bin_width: float = 0.01,
    latent: str = "van_der_pol",
    kernel: object = None,
    baseline_rate: float = 10.0,
    loading_scale: float = 0.6,
    seed: int = 0,
) -> xr.Dataset:
    r"""Poisson counts :math:`y_{rtn} \sim \mathrm{Poisson}(\Delta\exp(c_n^\top x_{rt} + d_n))`.

    Parameters
    ----------
    n_units, n_latents, n_trials, n_bins : int
        Population size, latent dimension, trials and bins per trial.
    bin_width : float
        :math:`\Delta` in seconds.
    latent : {"van_der_pol", "lorenz", "gp"}
        Source of the latents: a nonlinear oscillator integrated by RK4 from random starts (one
        time unit of the system per 0.15 s for van der Pol, 0.01 for Lorenz), or independent
        draws from ``kernel`` (a state-space kernel; default Matérn-5/2, lengthscale 0.2 s).
        Each latent is standardised to mean 0, variance 1 over all trials.
    baseline_rate : float
        Rate in Hz at :math:`x = 0` (sets :math:`d_n` around :math:`\log` of it).
    loading_scale : float
        Standard deviation of the loadings :math:`C` (log-rate change per latent unit).
    seed : int
        Seed of every random draw (identical output for identical arguments).

    Returns
    -------
    xr.Dataset
        ``spikes`` (trial, time, unit) counts; ground truth ``true_latent`` (trial, time, latent),
        ``rate`` in Hz (trial, time, unit), ``loading`` (unit, latent) and ``bias`` (unit).
        ``time`` is in seconds.

    Examples
    --------
    >>> ds = latent_spikes(n_units=5, n_trials=2, n_bins=50)
    >>> dict(ds.spikes.sizes)
    {'trial': 2, 'time': 50, 'unit': 5}
    """
    if min(n_units, n_latents, n_trials, n_bins) < 1 or not bin_width > 0:
        raise ValueError("expected positive sizes and bin_width")
    rng = np.random.default_rng(seed)
    x = _latents(latent, kernel, n_latents, n_trials, n_bins, bin_width, rng)
    loading = rng.normal(0.0, loading_scale, (n_units, n_latents))
    bias = np.log(baseline_rate) + rng.normal(0.0, 0.2, n_units)
    rate = np.exp(x @ loading.T + bias)  # Hz, (trial, time, unit)
    spikes = rng.poisson(rate * bin_width)
    time = np.arange(n_bins) * bin_width
    coords = {
        "trial": np.arange(n_trials),
        "time": time,
        "unit": np.arange(n_units),
        "latent": np.arange(n_latents),
    }
    ds = xr.Dataset(
        {
            "spikes": (
                ("trial", "time", "unit"),
                spikes,
                {"long_name": "spike count", "units": "1"},
            ),
            "true_latent": (
                ("trial", "time", "latent"),
                x,
                {"long_name": "true latent state (standardised)", "units": "1"},
            ),
            "rate": (("trial", "time", "unit"), rate, {"long_name": "firing rate", "units": "Hz"}),
            "loading": (("unit", "latent"), loading, {"long_name": "loading C"}),
            "bias": (("unit",), bias, {"long_name": "log-rate offset d"}),
        },
        coords=coords,
        attrs={
            "source": f"workbench.simulate.latent_spikes(latent={latent!r}, seed={seed})",
            "bin_width": bin_width,
        },
    )
    ds["time"].attrs = {"long_name": "time", "units": "s"}
    return ds


def _latents(latent, kernel, K, R, T, dt, rng) -> np.ndarray:
    if latent == "gp":
        return _gp_latents(kernel, K, R, T, dt, rng)
    if latent not in _SYSTEMS:
        raise ValueError(f"expected latent in {sorted([*_SYSTEMS, 'gp'])}, got {latent!r}")
    make, dim, seconds_per_unit = _SYSTEMS[latent]
    if K > dim:
        raise ValueError(f"expected n_latents <= {dim} for {latent!r}, got {K}")
    start = rng.normal(0.0, 1.0, (R, dim)) + (np.array([0.0, 0.0, 20.0])[:dim] if dim == 3 else 0)
    burn = 200  # discard the transient so trials start on the attractor
    states = integrate(make(), start, T + burn, dt / seconds_per_unit)[:, burn:, :K]
    return (states - states.mean((0, 1))) / states.std((0, 1))


def _gp_latents(kernel, K, R, T, dt, rng) -> np.ndarray:
    from workbench.kernels import MaternKernel
    from workbench.ssm import sample_state_space_prior

    kernel = (kernel or MaternKernel(nu=2.5, lengthscale=0.2)).double()
    grid = torch.arange(T, dtype=torch.float64) * dt
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    draws = sample_state_space_prior(kernel, grid, R * K, g).numpy()
    x = draws.reshape(R, K, T).transpose(0, 2, 1)
    return (x - x.mean((0, 1))) / x.std((0, 1))
