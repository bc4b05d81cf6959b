"""The quickstart model on shipped data: monthly Mauna Loa CO2 with a composite kernel."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr
from gpytorch.kernels import PeriodicKernel, RBFKernel, RQKernel, ScaleKernel

from workbench.datasets import load_dataset
from workbench.models import ExactGP

__all__ = ["DemoResult", "co2_kernel", "co2_monthly", "run_demo"]


class DemoResult(NamedTuple):
    model: ExactGP
    posterior: xr.Dataset
    netcdf: Path
    figure: Path
    summary: str


def co2_monthly() -> xr.DataArray:
    """Monthly means of the shipped weekly CO2 series (NaN where a month has no data)."""
    co2 = load_dataset("co2_mauna_loa").co2
    monthly = co2.resample(time="MS").mean()
    monthly.attrs = dict(co2.attrs)
    monthly["time"].attrs = {"long_name": "time"}
    return monthly


def co2_kernel() -> ScaleKernel:
    """Long-term trend + decaying yearly cycle + medium-term irregularities (time in years)."""
    trend = ScaleKernel(RBFKernel())
    trend.base_kernel.lengthscale, trend.outputscale = 50.0, 1000.0
    seasonal = ScaleKernel(PeriodicKernel() * RBFKernel())
    periodic, decay = seasonal.base_kernel.kernels
    periodic.period_length, periodic.lengthscale, decay.lengthscale = 1.0, 1.0, 100.0
    seasonal.outputscale = 5.0
    medium = ScaleKernel(RQKernel())
    medium.base_kernel.lengthscale, medium.outputscale = 1.0, 1.0
    return trend + seasonal + medium


def run_demo(
    out_dir: str | Path = "workbench-demo", *, steps: int = 10, forecast_years: int = 10
) -> DemoResult:
    """Fit :func:`co2_kernel` to :func:`co2_monthly`, forecast, and write netCDF + PNG."""
    from workbench.widgets.views import posterior_png

    data = co2_monthly()
    model = ExactGP(co2_kernel(), noise=0.1, time_unit="Y").fit(data, steps=steps)
    last = data.time.values[-1].astype("datetime64[M]")
    months = np.arange(data.time.values[0].astype("datetime64[M]"), last + 12 * forecast_years + 1)
    posterior = model.posterior(data, at=months.astype("datetime64[ns]"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    netcdf, figure = out / "posterior.nc", out / "posterior.png"
    posterior.to_netcdf(netcdf)
    figure.write_bytes(
        posterior_png(
            posterior, data, "time", title="Mauna Loa CO2: ExactGP", size=(9.0, 4.0), dpi=110
        )
    )
    end = posterior.isel(time=-1)
    hp = model.hyperparameters()
    summary = "\n".join(
        [
            f"workbench demo: ExactGP on monthly Mauna Loa CO2 "
            f"({int(data.notnull().sum())} months)",
            f"  log marginal likelihood: {model.log_marginal_likelihood(data):.2f}",
            f"  seasonal period: {hp['kernel.kernels.1.base_kernel.kernels.0.period_length']:.4f} "
            f"years, noise sd: {hp['noise'] ** 0.5:.3f} ppm",
            f"  forecast {str(end.time.values)[:7]}: {float(end['mean']):.1f} ppm "
            f"[{float(end.lower):.1f}, {float(end.upper):.1f}]",
            f"  wrote {netcdf} and {figure}",
        ]
    )
    return DemoResult(model, posterior, netcdf, figure, summary)
