r"""Full Bayesian hyper-parameters of a :class:`~workbench.models.MultitaskGP` by NUTS (Pyro).

For small data the multi-task GP's exact log marginal likelihood

.. math::
    \log p(y \mid \theta) = \log N\big(y;\ m,\ K_\theta + \Lambda_\theta\big),\qquad
    m_n = c_{i(n)},\quad \Lambda = \operatorname{diag}(\sigma^2_{i(n)}),

over the N stacked observed values (Kronecker eigen-decompositions on a complete ICM grid,
a Cholesky factor otherwise) is differentiable in :math:`\theta`, so NUTS samples
:math:`p(\theta \mid y) \propto p(\theta)\,p(y \mid \theta)` with the latent functions
integrated out exactly (sampler: :mod:`workbench.models.hyper_sampler`; priors:
:mod:`workbench.models.hyper_priors`). Above ``max_exact`` observed values the model uses
Titsias' sparse *bound*, which is not a likelihood: NUTS refuses it.

Sampled by default: the latents' kernel hyper-parameters on the time axis (lengthscales;
outputscales excepted), the tasks' noise variances and means (vectors over ``task``). The task
mixing (coregionalisation factors :math:`W_q`, diagonals :math:`v_q`, interaction coefficients
and task variances) stays fixed at the fitted values unless given a prior: :math:`W_q` enters
only through :math:`W_q W_q^\top`, so its posterior is symmetric under :math:`W_q \to -W_q`
(and rotations for rank > 1), multimodal, and its chains' R-hat meaningless.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.data import resolve_at
from workbench.errors import ValueRangeError
from workbench.inference.dense_gp import robust_cholesky
from workbench.io.attrs import make_attrs
from workbench.io.to_xarray import predictive_to_dataset
from workbench.models.hyper_outputs import (
    hyper_inference_data,
    mixture_moments,
    posterior_draws,
    replicate_draws,
    with_mixture_quantiles,
)
from workbench.models.hyper_priors import resolve_priors
from workbench.models.hyper_sampler import nuts_attrs, nuts_options, posterior_group, run_nuts

__all__ = [
    "averaged_posterior",
    "default_sampled",
    "pointwise_log_likelihood",
    "pointwise_terms",
    "sample_hyperparameters",
]

_LONG_NAME = "sequential predictive log density log p(y_n | y_<n), task-major order"
#: Dims of vector hyper-parameters, by the last part of their name ("task" is the task dim).
_DIMS = {
    "noise": ("task",),
    "task_mean": ("task",),
    "covar_factor": ("task", "rank"),
    "var": ("task",),
    "lengthscale": ("latent",),
    "coefficients": ("rank", "task", "latent"),
    "task_variance": ("latent", "task"),
}


def _check(model: Any, da: xr.DataArray) -> tuple:
    """``model._observe(da)`` of a fitted MultitaskGP whose exact likelihood applies, or raise."""
    from workbench.models.multitask import MultitaskGP

    if not isinstance(model, MultitaskGP):
        raise TypeError(f"expected a wb.MultitaskGP, got {type(model).__name__}")
    data = model._observe(da)
    model._require_fit()
    if model._method(data[0]) == "sparse":
        n = data[0].n_observed
        if model.inference == "sparse":
            got = "inference='sparse'"
        else:
            got = f"{n} observed values (> max_exact={model.max_exact})"
        raise ValueRangeError(
            f"expected the exact marginal likelihood for NUTS over the hyper-parameters, i.e. "
            f"inference='auto' or 'exact' and at most max_exact={model.max_exact} observed "
            f"values, got {got}; subset the data or raise max_exact (O(N^3) per NUTS step)"
        )
    return data


def default_sampled(model: Any) -> list[str]:
    """Names sampled by default: ``noise``, ``task_mean`` and the time-axis kernel
    hyper-parameters (``kernel.latents.*`` but outputscales, ``kernel.lengthscale``)."""
    names = []
    for name in model.hyperparameters():
        last = name.rpartition(".")[2]
        kernel = name.startswith("kernel.latents.") and last != "outputscale"
        if name in ("noise", "task_mean", "kernel.lengthscale") or kernel:
            names.append(name)
    return names


def _labels(model: Any, priors: Mapping[str, Any]) -> tuple[dict, dict]:
    """Dims and coords of the sampled vector hyper-parameters (see :data:`_DIMS`)."""
    sizes = {"task": len(model.tasks), "latent": model.n_latents, "rank": model.rank}
    dims = {}
    for name, prior in priors.items():
        shape, wanted = tuple(prior.batch_shape), _DIMS.get(name.rpartition(".")[2], ())
        if shape and tuple(sizes[d] for d in wanted) == shape:
            dims[name] = tuple(model.task_dim if d == "task" else d for d in wanted)
    coords = {model.task_dim: np.asarray(model.tasks), "latent": np.arange(sizes["latent"])}
    return dims, {**coords, "rank": np.arange(sizes["rank"])}


def pointwise_terms(
    model: Any, X: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Chain-rule terms of the exact log marginal likelihood, in the stacked (task-major)
    order of the N observed values: with :math:`L = \operatorname{chol}(K + \Lambda)` and
    :math:`z = L^{-1}(y - m)`,

    .. math::
        \log p(y_n \mid y_{<n}) = -\tfrac12 z_n^2 - \log L_{nn} - \tfrac12 \log 2\pi,
        \qquad \sum_n \log p(y_n \mid y_{<n}) = \log p(y).

    Returns the terms (N,), the prior mean m (N,) and L (N, N).
    """
    resid, noise = model._residuals(X, y)
    L = robust_cholesky(model._k(X, X) + torch.diag(noise))
    z = torch.linalg.solve_triangular(L, resid[:, None], upper=False)[:, 0]
    terms = -0.5 * z.square() - L.diagonal().log() - 0.5 * math.log(2 * math.pi)
    return terms, y - resid, L


def _draw_outputs(model: Any, data: tuple, g: torch.Generator) -> tuple:
    r"""Pointwise terms and one replicate :math:`y^{rep} = m + L\varepsilon \sim p(y \mid \theta)`
    at ``model``'s values, both (task, time) with NaN where unobserved."""
    obs, X, y = data
    with torch.no_grad():
        terms, mean, L = pointwise_terms(model, X, y)
        eps = torch.randn(mean.shape, generator=g, dtype=mean.dtype).to(mean)  # same on any device
        y_rep = mean + L @ eps
    out = []
    for values in (terms, y_rep):
        grid = torch.full(obs.mask.shape, torch.nan, dtype=values.dtype, device=values.device)
        grid[obs.mask] = values  # boolean indexing is task-major, as the stacking
        out.append(grid)
    return tuple(out)


def pointwise_log_likelihood(model: Any, da: xr.DataArray) -> xr.DataArray:
    r"""The chain-rule terms :math:`\log p(y_n \mid y_{<n}, \theta)` (:func:`pointwise_terms`)
    at the model's current values, ``DataArray(task, time)`` labelled like ``da`` (NaN where
    ``da`` is NaN); they sum to ``model.log_marginal_likelihood(da)``."""
    data = _check(model, da)
    obs = data[0]
    terms, _ = _draw_outputs(model, data, torch.Generator().manual_seed(0))
    out = obs.template.transpose(model.task_dim, "time").copy(data=terms.cpu().numpy())
    out.attrs = {"long_name": _LONG_NAME, "units": "1"}
    return out.rename("log_likelihood").transpose(*obs.template.dims)


def sample_hyperparameters(
    model: Any,
    da: xr.DataArray,
    *,
    priors: Mapping[str, Any] | None = None,
    fixed: Iterable[str] = (),
    num_samples: int = 500,
    warmup_steps: int | None = None,
    num_chains: int = 4,
    seed: int = 0,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    predictive: bool = True,
    progress: bool | None = None,
) -> Any:
    r"""Posterior draws of a MultitaskGP's hyper-parameters by NUTS on the exact marginal
    likelihood, with the ArviZ groups that ``az.summary``, ``az.loo`` and ``az.plot_ppc`` use.

    Parameters
    ----------
    model : MultitaskGP
        Fitted (default priors are centred on its values) and **not modified**.
    da : xr.DataArray
        The data ``(task, time)`` as for ``fit``, NaN = unobserved; at most ``max_exact``
        observed values.
    priors : mapping, optional
        ``{name: distribution}`` on the natural scale, names as in ``model.hyperparameters()``:
        a scalar distribution (for a vector hyper-parameter: elementwise, independently) or one
        with the hyper-parameter's shape as ``batch_shape``. A prior makes any hyper-parameter
        sampled (task mixing included); others sampled by default (see the module docstring)
        get :func:`~workbench.models.hyper_priors.default_priors`.
    fixed : iterable of str
        Hyper-parameters held at their current values.
    num_samples, warmup_steps, num_chains, seed, target_accept_prob, max_tree_depth, predictive,
    progress
        As for :func:`workbench.models.hyper_nuts.sample_hyperparameters` (same defaults).

    Returns
    -------
    arviz.InferenceData (ArviZ 0.x) or xarray.DataTree (ArviZ ≥ 1)
        - ``posterior``: one variable per sampled hyper-parameter, named as in
          ``model.hyperparameters()``: (chain, draw) for scalars, (chain, draw, task) for
          ``noise``/``task_mean`` (``latent``, ``rank`` dims for others); ``attrs["prior"]``.
        - ``sample_stats``: ``lp``, ``diverging``, ``step_size``, ``n_steps`` (leapfrog steps:
          the tree size), ``acceptance_rate``.
        - ``log_likelihood``: :math:`\log p(y_n \mid y_{<n}, \theta)` per observed value
          (:func:`pointwise_terms`, task-major order), summing exactly to
          :math:`\log p(y \mid \theta)`; ``az.loo`` then leaves out a value's prediction from
          its predecessors in that order.
        - ``posterior_predictive``: per draw, a replicate :math:`y^{rep} \sim p(y \mid \theta)`
          (new latent functions and noise: the collapsed model's posterior predictive).
        - ``observed_data``: the data.

        Data groups have dims (task, time), or one ``obs`` dim (with ``task``/``time``
        coordinates) when values are missing.


    Raises
    ------
    TypeError
        Not a MultitaskGP, or a prior that is not a distribution.
    RuntimeError
        An unfitted model.
    ValueRangeError
        The model would use its sparse bound (``inference="sparse"`` or more than
        ``max_exact`` observed values), bad sampler settings, or a prior outside its
        hyper-parameter's range.
    ValueError
        Unknown names, a name both in ``priors`` and ``fixed``, or nothing to sample.

    Notes
    -----
    Cost, for N observed values: each NUTS step evaluates the likelihood and its gradient
    ``n_steps`` times, O(N³) each (O(T³ + P³) for T tasks on a complete grid of P times with
    one latent); the outputs add one N x N Cholesky factor per draw.
    """
    obs, X, y = data = _check(model, da)
    options = nuts_options(
        num_samples, warmup_steps, num_chains, seed, target_accept_prob, max_tree_depth
    )
    work = copy.deepcopy(model)
    names, defaults = list(model.hyperparameters()), default_sampled(model)
    priors = resolve_priors(work, priors, fixed, candidates=names, defaults=defaults)

    def outputs(draws: dict, output_seed: int, bar: Any) -> Any:
        return replicate_draws(work, data, draws, output_seed, bar, draw_outputs=_draw_outputs)

    draws, stats, result = run_nuts(
        work,
        lambda: work._bound(obs, X, y),
        priors,
        options,
        progress,
        outputs if predictive else None,
    )
    posterior = posterior_group(draws, priors, *_labels(model, priors))
    attrs = {**nuts_attrs(model, priors, options), "inference": model._method(obs)}
    return hyper_inference_data(da, obs, posterior, stats, result, attrs, _LONG_NAME)


def averaged_posterior(
    model: Any,
    da: xr.DataArray,
    idata: Any,
    at: Any = None,
    *,
    max_draws: int | None = 200,
    ci_prob: float = 0.95,
    observation_noise: bool = False,
) -> xr.Dataset:
    r"""Every task's latent posterior averaged over hyper-parameter draws.

    Parameters
    ----------
    model : MultitaskGP
        The fitted model the draws belong to (hyper-parameters absent from the posterior keep
        its values); not modified.
    da, at, ci_prob, observation_noise
        As for ``MultitaskGP.posterior``.
    idata : InferenceData, DataTree or Dataset
        From :func:`sample_hyperparameters`, or any posterior with (chain, draw, ...)
        variables named and shaped as in ``model.hyperparameters()``.
    max_draws : int or None
        Evenly spaced draws over the flattened (chain, draw) used (None: all).

    Returns
    -------
    xr.Dataset
        ``mean`` :math:`\bar\mu = \frac1S\sum_s\mu_s`, ``variance``
        :math:`\frac1S\sum_s v_s + \frac1S\sum_s(\mu_s - \bar\mu)^2`, and the Gaussian
        mixture's equal-tailed ``lower``/``upper`` quantiles, (task, time) as ``posterior``.
    """
    obs, X, y = model._observe(da)
    model._require_fit()
    x_new, coords = resolve_at(obs, at)
    draws = posterior_draws(model, idata, max_draws, names=list(model.hyperparameters()))

    def moments(work: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            mean, variance = work._predict(obs, X, y, x_new)
            return mean, variance + (work.noise[:, None] if observation_noise else 0.0)

    M, V = mixture_moments(model, draws, moments)
    mean, variance = M.mean(0), V.mean(0) + M.var(0, correction=0)
    attrs = make_attrs(
        type(model).__name__,
        observation_noise=observation_noise,
        inference=model._method(obs),
        averaged_hyperparameters=json.dumps(sorted(draws)),
        hyperparameter_draws=M.shape[0],
        fixed_hyperparameters={k: v for k, v in model.hyperparameters().items() if k not in draws},
        interval="equal-tailed quantiles of the Gaussian mixture over the draws",
    )
    ds = predictive_to_dataset(obs, mean, variance, coords=coords, ci_prob=ci_prob, attrs=attrs)
    return with_mixture_quantiles(ds, M, V, (model.task_dim, "time"), ci_prob)
