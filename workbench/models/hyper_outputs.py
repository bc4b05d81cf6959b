r"""Outputs of NUTS over a model's hyper-parameters: the ArviZ groups, per-draw replicates and
the posterior averaged over the draws (shared by MarkovGP and MultitaskGP), and MarkovGP's
pointwise one-step-ahead log densities and posterior-predictive replicates.

The averaged posterior at a point is the equally weighted mixture over hyper-parameter draws
:math:`\theta_s` of the Gaussian posteriors :math:`N(\mu_s, v_s)`:

.. math::
    \bar\mu = \frac1S \sum_s \mu_s, \qquad
    \bar v = \frac1S \sum_s v_s + \frac1S \sum_s (\mu_s - \bar\mu)^2
    \quad\text{(law of total variance)},

with ``lower``/``upper`` the exact equal-tailed quantiles of that mixture (bisection on its
CDF), not :math:`\bar\mu \pm z \sqrt{\bar v}`: the mixture is wider-tailed and may be skewed.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import xarray as xr
from scipy.special import ndtr

from workbench.data import Observations, resolve_at
from workbench.io.arviz import pointwise_layout, samples_to_inference_data
from workbench.io.attrs import make_attrs
from workbench.io.to_xarray import predictive_to_dataset
from workbench.models.hyper_priors import hyperparameter_slots, set_draw
from workbench.ssm import sample_state_space_prior

__all__ = [
    "averaged_posterior",
    "hyper_inference_data",
    "mixture_moments",
    "mixture_quantiles",
    "pointwise_log_likelihood",
    "posterior_draws",
    "replicate_draws",
    "with_mixture_quantiles",
]

#: ``fn(model, obs, generator) -> (terms, y_rep)``: pointwise log densities and one replicate,
#: both (*batch, T) with NaN where unobserved, at ``model``'s current hyper-parameters.
DrawOutputs = Callable[[Any, Any, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def check_model(model: Any) -> None:
    """A MarkovGP with a Gaussian likelihood and shared hyper-parameters, or raise."""
    if not hasattr(model, "_state_space"):
        raise TypeError(f"expected a wb.MarkovGP, got {type(model).__name__}")
    if model.observation is not None:
        raise ValueError(
            f"expected likelihood='gaussian' (an exact marginal likelihood) for NUTS over the "
            f"hyper-parameters, got {type(model.observation).__name__}"
        )
    if model.members is not None:
        raise ValueError("expected share_hyperparameters=True, got per-series hyper-parameters")


def _one_step_terms(model: Any, filtered: Any, h: torch.Tensor, resid: torch.Tensor) -> Any:
    """log N(y_t; E[y_t | y_<t], Var[y_t | y_<t]) from the filter's one-step predictions."""
    mu = filtered.pred_mean @ h
    s = (filtered.pred_cov @ h) @ h + model.noise
    return -0.5 * (torch.log(2 * math.pi * s) + (resid - mu).square() / s)


def _normal(like: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Standard normals shaped like ``like`` from a CPU generator, on ``like``'s device."""
    return torch.randn(like.shape, generator=g, dtype=like.dtype).to(like.device)


def _draw_outputs(model: Any, obs: Observations, g: torch.Generator) -> tuple:
    """Pointwise one-step log densities and one replicate y (both (*batch, T)) at the model's
    current hyper-parameters; the replicate is an exact joint posterior draw by Matheron's rule
    (prior draw f0, eps ~ N(0, noise): f = c + f0 + E[f | y - c - f0 - eps]) plus new noise."""
    x = obs.x.to(model.mean)
    c, batch, T = model.prior_mean(x), obs.batch_shape, x.shape[0]
    with torch.no_grad():
        ssm = model._state_space(x)
        h, sd = ssm[2][0], model.noise.sqrt()
        resid = obs.y.to(x) - c
        f0 = sample_state_space_prior(model.kernel, x, max(obs.n_series, 1), g).reshape(*batch, T)
        pseudo = resid - f0 - sd * _normal(f0, g)
        both = torch.stack([resid, pseudo])  # one filter pass for the data and the pseudo-data
        filtered = model._filter(ssm, both, obs.mask.expand(both.shape))
        terms = _one_step_terms(model, filtered, h, both)[0]
        f = c + f0 + model._smoother(ssm, filtered).mean[1] @ h
        y_rep = f + sd * _normal(f, g)
    return torch.where(obs.mask, terms, torch.nan), y_rep


def pointwise_log_likelihood(model: Any, da: xr.DataArray, dim: str = "time") -> xr.DataArray:
    r"""One-step-ahead predictive log densities :math:`\log p(y_t \mid y_{<t}, \theta)` at the
    model's current hyper-parameters, labelled like ``da`` (NaN where ``da`` is NaN).

    By the chain rule they sum (over time and series) to the log marginal likelihood.
    """
    check_model(model)
    obs = model._observe(da, dim)
    terms, _ = _draw_outputs(model, obs, torch.Generator().manual_seed(0))
    out = obs.template.transpose(*obs.batch_dims, dim).copy(data=terms.cpu().numpy())
    out.attrs = {"long_name": "one-step-ahead predictive log density", "units": "1"}
    return out.rename("log_likelihood").transpose(*obs.template.dims)


def replicate_draws(
    model: Any,
    obs: Any,  # Observations (MarkovGP), or whatever ``draw_outputs`` takes
    draws: dict[str, torch.Tensor],
    seed: int,
    bar: Any = None,
    *,
    draw_outputs: DrawOutputs | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise log densities and replicates, (chain, draw, *batch, T), one per draw of
    ``draws`` ({name: (chain, draw, *shape)}), on a copy of ``model``; ``draw_outputs``
    computes them at one draw (default: MarkovGP's, from ``obs``)."""
    draw_outputs = _draw_outputs if draw_outputs is None else draw_outputs
    work, g = copy.deepcopy(model), torch.Generator().manual_seed(seed)
    shape = next(iter(draws.values())).shape[:2]
    terms, y_rep = [], []
    for index in np.ndindex(*shape):
        for name, values in draws.items():
            set_draw(work, name, values[index])
        t, y = draw_outputs(work, obs, g)
        terms.append(t.cpu().numpy())
        y_rep.append(y.cpu().numpy())
        if bar is not None:
            bar.update(1)
    return tuple(np.stack(a).reshape(*shape, *a[0].shape) for a in (terms, y_rep))


def hyper_inference_data(
    da: xr.DataArray,
    obs: Observations,
    posterior: dict[str, xr.DataArray],
    stats: dict[str, np.ndarray],
    outputs: tuple[np.ndarray, np.ndarray] | None,  # shapes: (chain, draw, *batch, T) twice
    attrs: dict[str, Any],
    long_name: str = "one-step-ahead predictive log density",
) -> Any:
    """ArviZ groups with the data's own dims and coords; data with missing values put the
    observed points on one ``obs`` dim (the data's coordinates along it), so that ``az.loo``
    and ``az.plot_ppc`` see finite values only. ``outputs``: pointwise log densities (named
    ``long_name``) and replicates from :func:`replicate_draws` (None: no such groups)."""
    name = str(da.name) if da.name is not None and da.name not in da.dims else "y"
    dims = [*obs.batch_dims, obs.dim]
    observed = da.transpose(*dims)
    mask = obs.mask.cpu().numpy()
    point_dims, coords = pointwise_layout(observed, mask)
    if not mask.all():
        observed = xr.DataArray(observed.values[mask], dims=point_dims, attrs=observed.attrs)
    groups: dict[str, dict[str, Any]] = {
        "posterior": posterior,
        "sample_stats": stats,
        "observed_data": {name: observed.assign_coords(coords)},
    }
    if outputs is not None:
        terms, y_rep = (a if mask.all() else a[:, :, mask] for a in outputs)
        sample_dims = ("chain", "draw", *point_dims)
        ll_attrs = {"long_name": long_name, "units": "1"}
        groups["log_likelihood"] = {
            name: xr.DataArray(terms, dims=sample_dims, coords=coords, attrs=ll_attrs)
        }
        groups["posterior_predictive"] = {
            name: xr.DataArray(y_rep, dims=sample_dims, coords=coords, attrs=dict(da.attrs))
        }
    return samples_to_inference_data(groups, attrs=attrs)


def posterior_draws(
    model: Any, idata: Any, max_draws: int | None, names: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Evenly spaced draws (over the flattened chains) of the posterior variables of ``idata``
    named after hyper-parameters of ``model``: ``{name: (S, *shape)}``.

    ``names``: the hyper-parameters that may appear (None: every scalar one).
    """
    post = idata
    if not isinstance(idata, xr.Dataset):
        try:
            post = idata["posterior"]
        except (KeyError, TypeError):
            raise ValueError(
                f"expected InferenceData/DataTree with a 'posterior' group, got "
                f"{type(idata).__name__}"
            ) from None
        post = post.to_dataset() if isinstance(post, xr.DataTree) else post
    slots = hyperparameter_slots(model, names)
    found = [n for n in post.data_vars if n in slots]
    bad = [n for n in found if not _fits(post[n], slots[n].shape)]
    if not found or bad:
        kind = "scalar hyper-parameters" if names is None else "hyper-parameters"
        raise ValueError(
            f"expected posterior variables (chain, draw, ...) named after {kind} "
            f"{sorted(slots)} with their shapes, got {sorted(map(str, post.data_vars))}"
        )
    if max_draws is not None and (int(max_draws) != max_draws or max_draws < 1):
        raise ValueError(f"expected max_draws >= 1 or None, got {max_draws}")
    flat = post[found].stack(sample=("chain", "draw"))
    n = flat.sizes["sample"]
    pick = np.unique(np.linspace(0, n - 1, min(n, max_draws or n)).round().astype(int))
    return {name: flat[name].transpose("sample", ...).values[pick] for name in found}


def _fits(var: xr.DataArray, shape: torch.Size) -> bool:
    """(chain, draw) dims, and the others of the hyper-parameter's shape (or one value)."""
    if not {"chain", "draw"} <= set(var.dims):
        return False
    rest = tuple(n for d, n in var.sizes.items() if d not in ("chain", "draw"))
    return rest == tuple(shape) or math.prod(rest) == 1 == math.prod(shape)


def mixture_quantiles(
    means: torch.Tensor,  # shape: (S, *shape) component means
    variances: torch.Tensor,  # shape: (S, *shape)
    prob: float,
    chunk: int = 1 << 22,
) -> np.ndarray:
    """The ``prob`` quantile of the equal-weight Gaussian mixture over axis 0, shape ``shape``
    (bisection on the mixture CDF to float64 resolution).

    Examples
    --------
    >>> means = torch.tensor([[0.0], [0.0]], dtype=torch.float64)
    >>> round(float(mixture_quantiles(means, torch.ones_like(means), 0.975)[0]), 6)
    1.959964
    """
    m = means.detach().cpu().numpy().reshape(means.shape[0], -1)
    sd = np.sqrt(variances.detach().cpu().numpy().clip(0.0).reshape(m.shape))
    out = np.empty(m.shape[1])
    step = max(1, chunk // m.shape[0])
    for lo_i in range(0, m.shape[1], step):
        mm, ss = m[:, lo_i : lo_i + step], sd[:, lo_i : lo_i + step]
        lo, hi = (mm - 10.0 * ss).min(0), (mm + 10.0 * ss).max(0)
        safe = np.where(ss > 0, ss, 1.0)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            z = np.where(ss > 0, (mid - mm) / safe, np.where(mid >= mm, np.inf, -np.inf))
            below = ndtr(z).mean(0) < prob
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
            if np.all(hi - lo <= 4e-16 * np.maximum(np.abs(lo), np.abs(hi))):
                break
        out[lo_i : lo_i + step] = 0.5 * (lo + hi)
    return out.reshape(means.shape[1:])


def mixture_moments(
    model: Any,
    draws: dict[str, np.ndarray],
    moments: Callable[[Any], tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Component means and variances, (S, *shape) each: ``moments(work)`` at every draw of
    ``draws`` ({name: (S, *shape)}) set on a copy of ``model``."""
    work, means, variances = copy.deepcopy(model), [], []
    for i in range(len(next(iter(draws.values())))):
        for name, values in draws.items():
            set_draw(work, name, values[i])
        mean, variance = moments(work)
        means.append(mean)
        variances.append(variance)
    return torch.stack(means), torch.stack(variances)


def with_mixture_quantiles(
    ds: xr.Dataset, M: torch.Tensor, V: torch.Tensor, dims: tuple[str, ...], ci_prob: float
) -> xr.Dataset:
    """``ds`` with ``lower``/``upper`` replaced by the mixture's equal-tailed quantiles
    (components ``M``, ``V`` of shape (S, *shape), ``dims`` naming ``shape``)."""
    for role, prob in (("lower", (1 - ci_prob) / 2), ("upper", (1 + ci_prob) / 2)):
        q = xr.DataArray(mixture_quantiles(M, V, prob), dims=dims)
        ds[role] = ds[role].copy(data=q.transpose(*ds[role].dims).values)
    return ds


def averaged_posterior(
    model: Any,
    da: xr.DataArray,
    idata: Any,
    dim: str = "time",
    at: Any = None,
    *,
    max_draws: int | None = 200,
    ci_prob: float = 0.95,
    observation_noise: bool = False,
) -> xr.Dataset:
    """Posterior of the latent function averaged over hyper-parameter draws.

    Parameters
    ----------
    model : MarkovGP
        The model the draws belong to; hyper-parameters absent from the posterior keep the
        model's values. The model itself is not modified.
    da, dim, at, ci_prob, observation_noise
        As for ``MarkovGP.posterior`` (``observation_noise=True`` adds each draw's noise).
    idata : InferenceData, DataTree or Dataset
        From :func:`~workbench.models.hyper_nuts.sample_hyperparameters` (or any posterior
        with (chain, draw) variables named as in ``model.hyperparameters()``).
    max_draws : int or None
        Evenly spaced draws over the flattened (chain, draw) used (None: all); one smoothing
        pass each.

    Returns
    -------
    xr.Dataset
        ``mean``, ``variance`` (law of total variance) and the mixture's equal-tailed
        ``lower``/``upper`` quantiles, labelled as by ``posterior``.
    """
    check_model(model)
    obs = model._observe(da, dim)
    x_new, coords = resolve_at(obs, at)
    draws = posterior_draws(model, idata, max_draws)

    def moments(work: Any) -> tuple[torch.Tensor, torch.Tensor]:
        post = work.predict_moments(obs, x_new)
        return post.mean, post.variance + (work.noise.detach() if observation_noise else 0.0)

    M, V = mixture_moments(model, draws, moments)
    mean, variance = M.mean(0), V.mean(0) + M.var(0, correction=0)
    fixed = {k: v for k, v in model.hyperparameters().items() if k not in draws}
    attrs = make_attrs(
        type(model).__name__,
        kernel=type(model.kernel).__name__,
        observation_noise=observation_noise,
        averaged_hyperparameters=json.dumps(sorted(draws)),
        hyperparameter_draws=M.shape[0],
        fixed_hyperparameters=fixed,
        interval="equal-tailed quantiles of the Gaussian mixture over the draws",
    )
    ds = predictive_to_dataset(obs, mean, variance, coords=coords, ci_prob=ci_prob, attrs=attrs)
    return with_mixture_quantiles(ds, M, V, (*obs.batch_dims, dim), ci_prob)
