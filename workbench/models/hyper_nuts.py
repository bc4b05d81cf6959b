r"""Full Bayesian hyper-parameters of a :class:`~workbench.models.MarkovGP` by NUTS (Pyro).

The Gaussian-likelihood log marginal likelihood :math:`\log p(y \mid \theta)` of a MarkovGP is an
O(T) Kalman filter, differentiable in :math:`\theta`: NUTS samples
:math:`p(\theta \mid y) \propto p(\theta)\, p(y \mid \theta)` with the latent function
integrated out exactly (the sampler and its potential: :mod:`workbench.models.hyper_sampler`;
default priors: :func:`workbench.models.hyper_priors.default_priors`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import xarray as xr

from workbench.models.hyper_outputs import check_model, hyper_inference_data, replicate_draws
from workbench.models.hyper_priors import resolve_priors
from workbench.models.hyper_sampler import nuts_attrs, nuts_options, posterior_group, run_nuts

__all__ = ["sample_hyperparameters"]


def sample_hyperparameters(
    model: Any,
    da: xr.DataArray,
    dim: str = "time",
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
    r"""Posterior draws of a MarkovGP's hyper-parameters by NUTS on the exact O(T) marginal
    likelihood, with the ArviZ groups that ``az.summary``, ``az.loo`` and ``az.plot_ppc`` use.

    Parameters
    ----------
    model : MarkovGP
        Gaussian likelihood and shared hyper-parameters. It is **not modified**: its values
        stay as they were (use :func:`~workbench.models.hyper_outputs.averaged_posterior` to
        predict with the draws, or set e.g. posterior medians yourself).
    da : xr.DataArray
        The data, as for ``fit`` (extra dims are independent series sharing the draws).
    priors : mapping, optional
        ``{name: pyro distribution}`` on the natural scale, names as in
        ``model.hyperparameters()``; a prior's support must lie within the parameter's range
        (LogNormal, Gamma, HalfNormal, … for positive ones). Other scalar hyper-parameters get
        :func:`~workbench.models.hyper_priors.default_priors`.
    fixed : iterable of str
        Hyper-parameters held at their current values (not sampled).
    num_samples, warmup_steps, num_chains : int
        Draws kept per chain, adaptation steps per chain (default ``num_samples``; step size
        and a diagonal mass matrix are adapted), and chains. Chains run one after the other in
        this process (no multiprocessing: robust in notebooks and under pytest).
    seed : int
        Chains and replicates are reproducible from it (each chain's seed is spawned with
        ``numpy.random.SeedSequence``); torch's global RNG state is restored afterwards.
    target_accept_prob, max_tree_depth
        NUTS settings (raise the first, e.g. 0.95, if there are divergences).
    predictive : bool
        ``False`` leaves out ``log_likelihood`` and ``posterior_predictive`` (which cost one
        filter and smoother pass per draw).
    progress : bool, optional
        One bar over all chains (``None``: on unless ``WORKBENCH_PROGRESS=0``).

    Returns
    -------
    arviz.InferenceData (ArviZ 0.x) or xarray.DataTree (ArviZ ≥ 1)
        - ``posterior``: one (chain, draw) variable per sampled hyper-parameter, named exactly
          as in ``model.hyperparameters()`` (dotted names; ``attrs["prior"]`` is its prior).
        - ``sample_stats``: ``lp`` (log joint density on the unconstrained scale, Jacobian
          included, as Stan's ``lp__``), ``diverging``, ``step_size``, ``n_steps`` (leapfrog
          steps: gradient evaluations) and ``acceptance_rate``.
        - ``log_likelihood``: the one-step-ahead predictive log densities
          :math:`\log p(y_t \mid y_{<t}, \theta)`, which sum exactly to :math:`\log p(y\mid\theta)`.
          ``az.loo`` on them leaves out one point's *prediction from its past*, not a point
          from both sides (for a time series, closer to leave-future-out than to LOO).
        - ``posterior_predictive``: one replicate of the data per draw, an exact joint draw
          from :math:`p(\tilde y \mid y, \theta)` (Matheron's rule, O(T)), at the data's points.
        - ``observed_data``: the data.

        Data groups have the data's dims (series dims first) and coordinates; with missing
        values they hold the observed points along one ``obs`` dim instead. Attributes record
        the priors, fixed values, NUTS settings and provenance.

    Raises
    ------
    TypeError
        ``model`` is not a MarkovGP, or a prior is not a distribution.
    ValueError
        Unknown names, a name both in ``priors`` and ``fixed``, nothing to sample, a
        non-Gaussian likelihood, or bad sampler settings.
    ValueRangeError
        A prior puts mass outside its parameter's range (e.g. Normal for a lengthscale).

    Notes
    -----
    Cost: each NUTS step evaluates the filter and its gradient ``n_steps`` times (O(T)
    each); the replicates and log densities add one filter and smoother pass per draw.
    """
    check_model(model)
    options = nuts_options(
        num_samples, warmup_steps, num_chains, seed, target_accept_prob, max_tree_depth
    )
    obs = model._observe(da, dim)
    work = copy.deepcopy(model)
    priors = resolve_priors(work, priors, fixed)

    def outputs(draws: dict, output_seed: int, bar: Any) -> Any:
        return replicate_draws(work, obs, draws, output_seed, bar)

    draws, stats, result = run_nuts(
        work,
        lambda: work._log_marginals(obs).sum(),
        priors,
        options,
        progress,
        outputs if predictive else None,
    )
    posterior = posterior_group(draws, priors)
    attrs = nuts_attrs(model, priors, options)
    return hyper_inference_data(da, obs, posterior, stats, result, attrs)
