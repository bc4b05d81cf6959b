"""Exact (dense, O(T³)) GP regression on one labelled dim: small data and the reference model."""

from __future__ import annotations

from typing import Any, Self

import gpytorch
import torch
import xarray as xr
from gpytorch.kernels import Kernel

from workbench.data import Observations, TimeAxis, from_dataarray, resolve_at
from workbench.errors import DTypeError
from workbench.inference import dense_gp_log_marginal, dense_gp_predict
from workbench.io import make_attrs, predictive_to_dataset
from workbench.kernels import kernel_from_spec, kernel_to_spec
from workbench.models.base import Model, Posterior
from workbench.models.training import optimize

__all__ = ["ExactGP"]


class ExactGP(Model):
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
        Initial constant prior mean :math:`c` (set to the data mean on the first fit).
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

    def __init__(
        self,
        kernel: Kernel,
        likelihood: str = "gaussian",
        *,
        noise: float = 0.1,
        mean: float = 0.0,
        time_unit: str = "D",
        axis: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(kernel, Kernel):
            raise TypeError(f"expected a gpytorch Kernel, got {type(kernel).__name__}")
        if likelihood != "gaussian":
            raise ValueError(f"expected likelihood='gaussian' for ExactGP, got {likelihood!r}")
        if not noise > 0:
            raise ValueError(f"expected noise > 0, got {noise}")
        self.kernel = kernel
        self.likelihood = likelihood
        self.time_unit = time_unit
        self.axis = TimeAxis(**axis) if axis is not None else None
        self.raw_noise = torch.nn.Parameter(torch.zeros(()))
        self.raw_noise_constraint = gpytorch.constraints.GreaterThan(1e-8)
        self.mean = torch.nn.Parameter(torch.tensor(float(mean)))
        self.double()
        self.set_hyperparameter("noise", noise)

    @property
    def noise(self) -> torch.Tensor:
        return self.raw_noise_constraint.transform(self.raw_noise)

    def get_config(self) -> dict[str, Any]:
        config = {
            "kernel": kernel_to_spec(self.kernel),
            "likelihood": self.likelihood,
            "time_unit": self.time_unit,
        }
        if self.axis is not None:
            config["axis"] = {
                "kind": self.axis.kind,
                "unit": self.axis.unit,
                "origin": self.axis.origin,
            }
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ExactGP:
        return cls(
            kernel_from_spec(config["kernel"]),
            config["likelihood"],
            time_unit=config["time_unit"],
            axis=config.get("axis"),
        )

    # -- data ----------------------------------------------------------------------------------
    def _observe(self, da: xr.DataArray, dim: str) -> Observations:
        obs = from_dataarray(da, dim, time_unit=self.time_unit, axis=self.axis)
        if self.axis is not None and self.axis.kind != obs.axis.kind:
            raise DTypeError(
                f"expected {self.axis.kind} coordinates for dim {dim!r} as at fit time, got "
                f"{obs.axis.kind}"
            )
        return obs

    def _series(self, obs: Observations):
        x = obs.x.to(self.mean)
        y = obs.y.to(self.mean).reshape(-1, x.shape[0])
        mask = obs.mask.reshape(-1, x.shape[0])
        for yi, mi in zip(y, mask, strict=True):
            yield x[mi], yi[mi]

    def _covariance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.kernel(a.unsqueeze(-1), b.unsqueeze(-1)).to_dense()

    def _log_marginals(self, obs: Observations) -> torch.Tensor:
        values = [
            dense_gp_log_marginal(self._covariance(xo, xo), yo - self.mean, self.noise)
            for xo, yo in self._series(obs)
        ]
        return torch.stack(values).reshape(obs.batch_shape)

    # -- public API ----------------------------------------------------------------------------
    def fit(
        self,
        da: xr.DataArray,
        dim: str = "time",
        *,
        steps: int = 50,
        lr: float | None = None,
        method: str = "lbfgs",
        learn_hyperparameters: bool = True,
        progress: bool | None = None,
        callback: Any = None,
    ) -> Self:
        """Maximise the exact log marginal likelihood over the hyper-parameters.

        The loss is the negative log marginal likelihood per observed value, minimised by
        ``method`` ("lbfgs", default, or "adam") for ``steps`` iterations; ``lr`` defaults to 1
        for L-BFGS and 0.01 for Adam. On the first fit the constant mean starts at the observed
        mean. Returns ``self``.
        """
        obs = self._observe(da, dim)
        if self.axis is None:
            with torch.no_grad():
                self.mean.copy_(obs.y[obs.mask].mean())
            self.axis = obs.axis
        if learn_hyperparameters:
            n = obs.n_observed
            self.fit_losses = optimize(
                self,
                lambda: -self._log_marginals(obs).sum() / n,
                steps=steps,
                lr=lr if lr is not None else (1.0 if method == "lbfgs" else 0.01),
                method=method,
                progress=progress,
                desc=type(self).__name__,
                callback=callback,
            )
        return self

    def log_marginal_likelihood(self, da: xr.DataArray, dim: str = "time") -> float | xr.DataArray:
        """Exact :math:`\\log p(y)` per series: a float, or a DataArray over the batch dims."""
        obs = self._observe(da, dim)
        with torch.no_grad():
            values = self._log_marginals(obs).cpu().numpy()
        if not obs.batch_dims:
            return float(values)
        template = obs.template.isel({dim: 0}, drop=True).rename("log_marginal_likelihood")
        return template.copy(
            data=values.transpose([obs.batch_dims.index(str(d)) for d in template.dims])
        )

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
                    yo - self.mean,
                    self.noise,
                )
                means.append(pred.mean + self.mean)
                variances.append(pred.variance)
        shape = (*obs.batch_shape, x_new.shape[0])
        return Posterior(torch.stack(means).reshape(shape), torch.stack(variances).reshape(shape))

    def posterior(
        self,
        da: xr.DataArray,
        dim: str = "time",
        at: Any = None,
        *,
        ci_prob: float = 0.95,
        observation_noise: bool = False,
    ) -> xr.Dataset:
        """Posterior of the latent function given ``da``, at its coordinates or at ``at``.

        ``observation_noise=True`` adds :math:`\\sigma^2` (predictive of new observations).
        Returns a Dataset with ``mean``, ``variance``, ``lower``, ``upper`` along ``dim``.
        """
        obs = self._observe(da, dim)
        x_new, coords = resolve_at(obs, at)
        post = self.predict_moments(obs, x_new)
        variance = post.variance + (self.noise.detach() if observation_noise else 0.0)
        attrs = make_attrs(
            type(self).__name__,
            self.hyperparameters(),
            kernel=type(self.kernel).__name__,
            observation_noise=observation_noise,
        )
        return predictive_to_dataset(
            obs, post.mean, variance, coords=coords, ci_prob=ci_prob, attrs=attrs
        )
