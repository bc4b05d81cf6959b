"""Exact (dense, O(T³)) GP regression on one labelled dim: small data and the reference model."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from workbench.data import Observations
from workbench.inference import dense_gp_log_marginal, dense_gp_predict
from workbench.models.base import Posterior
from workbench.models.gp_regression import GPRegression

__all__ = ["ExactGP"]


class ExactGP(GPRegression):
    r"""GP regression with a Gaussian likelihood, computed densely by Cholesky factorisation.

    .. math::
        f \sim \mathcal{GP}(c, k), \qquad y_t = f(x_t) + \varepsilon_t,\;
        \varepsilon_t \sim \mathcal N(0, \sigma^2)

    Costs O(T³) per series; use it for up to a few thousand points, or as the oracle for
    the linear-time models. Extra dims of the input are independent series that share the
    hyper-parameters.

    Parameters
    ----------
    kernel : gpytorch.kernels.Kernel
        Prior covariance :math:`k` on the float axis (see ``time_unit``).
    likelihood : {"gaussian"}
        Observation model.
    noise : float
        Initial noise variance :math:`\sigma^2`.
    mean : float
        Initial prior mean :math:`c` (set by least squares on the first fit).
    trend : {"constant", "linear"}
        Prior mean :math:`c` or :math:`c + s\,x` (the slope :math:`s` is learned too; use it
        for series with a trend that should continue when forecasting).
    share_hyperparameters : bool
        Extra dims of the input are independent series. ``True``: they share one set of
        hyper-parameters. ``False``: each series gets its own copy of the kernel, noise and
        mean (created on the first fit; predictions then need the same series).
    time_unit : str
        Unit of the float axis for ``datetime64`` coordinates ("D", "Y", "h", …).

    Examples
    --------
    >>> import numpy as np, xarray as xr, gpytorch
    >>> import workbench as wb
    >>> x = np.linspace(0, 5, 30)
    >>> da = xr.DataArray(np.sin(x), dims="time", coords={"time": x})
    >>> m = wb.ExactGP(gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel()), noise=0.01)
    >>> ds = m.fit(da, steps=20, progress=False).posterior(da)
    >>> sorted(ds.data_vars)
    ['lower', 'mean', 'upper', 'variance']
    """

    def _series(self, obs: Observations) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x = obs.x.to(self.mean)
        y = obs.y.to(self.mean).reshape(-1, x.shape[0])
        mask = obs.mask.reshape(-1, x.shape[0])
        for yi, mi in zip(y, mask, strict=True):
            yield x[mi], yi[mi]

    def _covariance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.kernel(a.unsqueeze(-1), b.unsqueeze(-1)).to_dense()

    def _log_marginals(self, obs: Observations) -> torch.Tensor:
        values = [
            dense_gp_log_marginal(self._covariance(xo, xo), yo - self.prior_mean(xo), self.noise)
            for xo, yo in self._series(obs)
        ]
        return torch.stack(values).reshape(obs.batch_shape)

    def predict_moments(self, obs: Observations, x_new: torch.Tensor) -> Posterior:
        """Latent posterior moments at ``x_new`` (shape (T_new,)) for every series of ``obs``."""
        x_new = x_new.to(self.mean)
        k_diag = self.kernel(x_new.unsqueeze(-1), diag=True)
        means, variances = [], []
        with torch.no_grad():
            for xo, yo in self._series(obs):
                pred = dense_gp_predict(
                    self._covariance(xo, xo),
                    self._covariance(x_new, xo),
                    k_diag,
                    yo - self.prior_mean(xo),
                    self.noise,
                )
                means.append(pred.mean + self.prior_mean(x_new))
                variances.append(pred.variance)
        shape = (*obs.batch_shape, x_new.shape[0])
        return Posterior(torch.stack(means).reshape(shape), torch.stack(variances).reshape(shape))
