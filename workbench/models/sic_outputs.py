"""Labelled outputs of the sparse inverse Cholesky GP: ``posterior`` and ``to_inference_data``
(a mixin, keeping ``sic_gp`` to fitting and prediction)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from scipy.special import ndtri

from workbench.data.spatial import new_inputs
from workbench.io.arviz import check_num_samples, samples_to_inference_data
from workbench.io.attrs import make_attrs
from workbench.likelihoods import Gaussian, sample_observations
from workbench.models.divergence import check_moments

__all__ = ["SparseOutputsMixin"]


class SparseOutputsMixin:
    """``posterior`` and ``to_inference_data`` for
    :class:`~workbench.models.SparseInverseCholeskyGP`."""

    def to_inference_data(
        self, num_samples: int = 200, *, log_likelihood: bool = True, seed: int = 0
    ) -> Any:
        """ArviZ groups over the observed values of the training data, on one ``obs`` dim with
        the data's coordinates along it: ``posterior`` draws of the latent ``f`` (data units),
        ``posterior_predictive`` replicates, ``observed_data`` and pointwise
        ``log_likelihood`` :math:`\\log p(y_i \\mid f_i)` in the data's units.

        The draws of f are independent per point from the variational marginals, so per-point
        summaries, ``az.loo`` (pointwise terms need only marginals) and ``az.plot_ppc`` are
        exact for q, while functionals coupling several points are not. Seeded.
        """
        if self.data is None:
            raise RuntimeError("expected a fitted model (call fit first)")
        check_num_samples(num_samples)
        points, template = self._points, self._template
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            mean, var = self.predict_latent(points.X)  # standardised units, data order
            z = torch.randn(num_samples, mean.shape[0], generator=g, dtype=mean.dtype)
            f = mean + var.sqrt() * z.to(mean)
            loc, scale = float(self.y_loc), float(self.y_scale)
            y_std = torch.as_tensor((points.y - loc) / scale).to(f)
            rep = sample_observations(self.likelihood, f, g)
            point = self.likelihood.log_prob(y_std, f) - np.log(scale)
        name = str(template.name) if template.name is not None else "y"
        groups: dict[str, dict[str, Any]] = {
            "posterior": {"f": (loc + scale * f).cpu().numpy()[None]},
            "posterior_predictive": {name: (loc + scale * rep).cpu().numpy()[None]},
            "observed_data": {name: np.asarray(points.y)},
        }
        if log_likelihood:
            groups["log_likelihood"] = {name: point.cpu().numpy()[None]}
        attrs = make_attrs(type(self).__name__, self.hyperparameters(), rho=self.rho,
                           draws=num_samples, seed=seed)  # fmt: skip
        along = {k: ("obs", points.X[:, i]) for i, k in enumerate(points.inputs)}
        return samples_to_inference_data(
            groups,
            dims={"f": ["obs"], name: ["obs"]},
            coords={"obs": np.arange(points.y.shape[0])},
            group_coords=dict.fromkeys(groups, along),
            var_attrs={"observed_data": {name: template.attrs}},
            attrs=attrs,
        )

    def posterior(
        self, at: Any = None, *, ci_prob: float = 0.95, observation_noise: bool = False
    ) -> xr.Dataset:
        """Posterior of the latent function: at every cell of the training grid (gridded data,
        ``at=None``), at the training points (points data), or at ``at`` (a DataArray or
        Dataset with the same input coordinates, or a grid over the inputs in any dim order,
        labelled like it; or an (s, d) array, along a ``point`` dim; see
        :func:`~workbench.data.spatial.new_inputs`). ``mean``, ``variance``, ``lower``,
        ``upper``; ``observation_noise=True`` adds the Gaussian noise."""
        if self.data is None:
            raise RuntimeError("expected a fitted model (call fit first)")
        template = self._template
        X_new, source = new_inputs(template if at is None else at, self._points.inputs)
        mean, var = check_moments(*self.predict_latent(X_new))
        if observation_noise:
            if not isinstance(self.likelihood, Gaussian):
                raise ValueError("observation_noise=True needs likelihood='gaussian'")
            var = var + self.likelihood.noise.detach()
        half = float(ndtri(0.5 + ci_prob / 2)) * var.sqrt()
        loc, scale = float(self.y_loc), float(self.y_scale)
        mean, var, half = loc + scale * mean, scale**2 * var, scale * half
        out = {"mean": mean, "variance": var, "lower": mean - half, "upper": mean + half}
        if source is not None:  # the grid or points of `at` (or of the data)
            values = {k: (source.dims, v.cpu().numpy().reshape(source.shape))
                      for k, v in out.items()}  # fmt: skip
            ds = xr.Dataset(values, coords=source.coords)
        else:
            ds = xr.Dataset({k: (("point",), v.cpu().numpy()) for k, v in out.items()})
        units = template.attrs.get("units")
        for name in ds.data_vars:
            ds[name].attrs = {"long_name": f"posterior {name} of {template.name or 'the data'}"}
            if units is not None:
                ds[name].attrs["units"] = f"({units})^2" if name == "variance" else units
        ds.attrs = make_attrs(type(self).__name__, self.hyperparameters(), rho=self.rho,
                              ci_prob=ci_prob, observation_noise=observation_noise)  # fmt: skip
        return ds
