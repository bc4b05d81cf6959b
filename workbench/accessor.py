"""The ``.wb`` accessor on ``xr.DataArray``: workbench in xarray pipelines (forwarding only)."""

from __future__ import annotations

from typing import Any

import xarray as xr

from workbench.kernels import MaternKernel
from workbench.models import MarkovGP
from workbench.scale import fit_many

__all__ = ["WorkbenchAccessor"]


@xr.register_dataarray_accessor("wb")
class WorkbenchAccessor:
    """``da.wb.smooth(...)``, ``da.wb.fit(model)``, ``da.wb.posterior(model)``,
    ``da.wb.fit_many(make_model, over=...)``.

    Stateless: xarray caches an accessor per object, and operations return new objects, so
    nothing is kept here; every method forwards to the workbench function or model method of
    the same name with this DataArray as the data.

    Examples
    --------
    >>> import numpy as np, xarray as xr, workbench as wb
    >>> t = np.linspace(0, 10, 200)
    >>> da = xr.DataArray(np.sin(t), dims="time", coords={"time": t})
    >>> sorted(da.wb.smooth(steps=5).data_vars)
    ['lower', 'mean', 'upper', 'variance']
    """

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def smooth(
        self,
        kernel: Any = None,
        *,
        dim: str = "time",
        noise: float = 0.1,
        steps: int = 50,
        at: Any = None,
        ci_prob: float = 0.95,
        **model_kwargs: Any,
    ) -> xr.Dataset:
        """Fit a :class:`~workbench.MarkovGP` (default kernel: Matérn-3/2) by its exact log
        marginal likelihood and return its posterior (``mean``, ``variance``, ``lower``,
        ``upper`` along ``dim``, or at ``at``). O(T) per series."""
        kernel = MaternKernel(nu=1.5) if kernel is None else kernel
        model = MarkovGP(kernel, noise=noise, **model_kwargs)
        model.fit(self._da, dim=dim, steps=steps, progress=False)
        return model.posterior(self._da, dim=dim, at=at, ci_prob=ci_prob)

    def fit(self, model: Any, **kwargs: Any) -> Any:
        """``model.fit(da, **kwargs)``; returns the fitted model."""
        return model.fit(self._da, **kwargs)

    def posterior(self, model: Any, **kwargs: Any) -> xr.Dataset:
        """``model.posterior(da, **kwargs)``."""
        return model.posterior(self._da, **kwargs)

    def fit_many(self, make_model: Any, over: str, **kwargs: Any) -> xr.Dataset:
        """``wb.fit_many(make_model, da, over=over, **kwargs)``: one model per entry of
        ``over``."""
        return fit_many(make_model, self._da, over=over, **kwargs)
