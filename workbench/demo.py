"""The quickstart model on shipped data: weekly Mauna Loa CO2 with a Hida-Matérn sum, O(T)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr

from workbench.datasets import load_dataset
from workbench.kernels import HidaMaternKernel, MaternKernel, StateSpaceKernel
from workbench.models import MarkovGP

__all__ = ["DemoResult", "co2_kernel", "run_demo"]


class DemoResult(NamedTuple):
    model: MarkovGP
    posterior: xr.Dataset
    netcdf: Path
    figure: Path
    summary: str


def co2_kernel() -> StateSpaceKernel:
    """Slow deviations from the linear trend + decaying yearly cycle + short-term noise (years)."""
    return (
        MaternKernel(nu=2.5, lengthscale=10.0, outputscale=1.0)
        + HidaMaternKernel(order=1, lengthscale=50.0, frequency=2 * math.pi, outputscale=5.0)
        + MaternKernel(nu=1.5, lengthscale=0.5, outputscale=0.1)
    )


def run_demo(
    out_dir: str | Path = "workbench-demo", *, steps: int = 5, forecast_years: int = 10
) -> DemoResult:
    """Fit :func:`co2_kernel` to the weekly CO2 series, forecast, and write netCDF + PNG."""
    from workbench.widgets.views import posterior_png

    data = load_dataset("co2_mauna_loa").co2
    model = MarkovGP(co2_kernel(), noise=0.1, trend="linear", time_unit="Y")
    model.fit(data, steps=steps)
    start, end = data.time.values[0], data.time.values[-1]
    weeks = np.arange(
        start, end + np.timedelta64(365 * forecast_years, "D"), np.timedelta64(7, "D")
    )
    posterior = model.posterior(data, at=weeks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    netcdf, figure = out / "posterior.nc", out / "posterior.png"
    posterior.to_netcdf(netcdf)
    png = posterior_png(
        posterior, data, "time", title="Mauna Loa CO2: MarkovGP", size=(9.0, 4.0), dpi=110
    )
    figure.write_bytes(png)
    last = posterior.isel(time=-1)
    hp = model.hyperparameters()
    summary = "\n".join(
        [
            f"workbench demo: MarkovGP on weekly Mauna Loa CO2 "
            f"({int(data.notnull().sum())} weeks observed, {int(data.isnull().sum())} missing)",
            f"  log marginal likelihood: {model.log_marginal_likelihood(data):.2f}",
            f"  trend: {hp['slope']:.3f} ppm/year, seasonal period: "
            f"{2 * math.pi / hp['kernel.kernels.1.frequency']:.4f} years, "
            f"noise sd: {hp['noise'] ** 0.5:.3f} ppm",
            f"  forecast {str(last.time.values)[:10]}: {float(last['mean']):.1f} ppm "
            f"[{float(last.lower):.1f}, {float(last.upper):.1f}]",
            f"  wrote {netcdf} and {figure}",
        ]
    )
    return DemoResult(model, posterior, netcdf, figure, summary)
