r"""Full Bayesian hyper-parameters of a :class:`~workbench.models.MarkovGP` by NUTS (Pyro).

The Gaussian-likelihood log marginal likelihood :math:`\log p(y \mid \theta)` of a MarkovGP is an
O(T) Kalman filter, differentiable in :math:`\theta`, so NUTS samples

.. math::
    p(\theta \mid y) \propto p(\theta)\, p(y \mid \theta)

directly, with the latent function integrated out exactly. Each sampled scalar hyper-parameter
:math:`\theta_i` has a prior on its natural scale (a torch/Pyro distribution); NUTS (Pyro's, with
step-size and diagonal mass-matrix adaptation) moves on :math:`z_i` with
:math:`\theta_i = b_i(z_i)`, :math:`b_i` = ``biject_to(prior.support)`` (e.g. exp for a LogNormal
prior), i.e. on the potential

.. math::
    U(z) = -\Big[\log p(y \mid \theta) + \sum_i \log p(\theta_i)
           + \log\Big|\frac{d\theta_i}{dz_i}\Big|\Big].

(This is what a Pyro model with ``pyro.sample(name, prior)`` sites and
``pyro.factor("lml", ...)`` compiles to; writing the potential directly halves the per-step
overhead.)

Default priors: :func:`workbench.models.hyper_priors.default_priors`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.data import Observations
from workbench.io.arviz import check_num_samples
from workbench.io.attrs import make_attrs
from workbench.models.hyper_outputs import check_model, hyper_inference_data, replicate_draws
from workbench.models.hyper_priors import describe, inside, resolve_priors
from workbench.progress import progress_bar

__all__ = ["sample_hyperparameters"]

_INIT_RADIUS = 1.0  # chains start uniformly within ±1 (unconstrained) of the current values


class _LogMarginal(torch.nn.Module):
    """log p(y | theta) summed over series, with theta substituted functionally."""

    def __init__(self, model: Any, obs: Observations, names: list[str]) -> None:
        super().__init__()
        self.model, self.obs = model, obs
        path = {id(p): f"model.{k}" for k, p in model.named_parameters()}
        self.raw = {n: (path[id(p)], p, c) for n, p, c in model._constrained() if n in names}
        self.evaluations = 0

    def forward(self) -> torch.Tensor:
        return self.model._log_marginals(self.obs).sum()

    def evaluate(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self.evaluations += 1
        params = {}
        for name, value in values.items():
            path, param, constraint = self.raw[name]
            value = value.to(param).reshape(param.shape)
            if constraint is not None:
                # below a floor (noise > 1e-8) the model cannot go: the likelihood stays at the
                # floor's value there, which keeps NUTS's energies finite
                value = constraint.inverse_transform(inside(value, constraint))
            params[path] = value
        return torch.func.functional_call(self, params, ())


def _initial_values(model: Any, priors: Mapping[str, Any], g: torch.Generator) -> dict:
    """Current values jittered uniformly by ±1 on the prior's unconstrained scale."""
    from torch.distributions import biject_to

    current, out = model.hyperparameters(), {}
    for name, prior in priors.items():
        v = torch.tensor(float(current[name]), dtype=torch.float64)
        if not bool(prior.support.check(v)):  # e.g. a user prior excluding the current value
            v = prior.sample((101,)).to(torch.float64).median()
        bijection = biject_to(prior.support)
        u = bijection.inv(v) + _INIT_RADIUS * (2 * torch.rand((), generator=g, dtype=v.dtype) - 1)
        out[name] = bijection(u)
    return out


def _potential(target: _LogMarginal, priors: dict[str, Any]) -> Any:
    """U(z) = -[log p(y | theta) + sum log p(theta_i) + log |d theta_i / d z_i|], theta_i =
    biject_to(support_i)(z_i): the unconstrained potential that NUTS explores."""
    from torch.distributions import biject_to

    bijections = {name: biject_to(prior.support) for name, prior in priors.items()}

    def potential(z: dict[str, torch.Tensor]) -> torch.Tensor:
        values, log_joint = {}, 0.0
        for name, prior in priors.items():
            values[name] = theta = bijections[name](z[name])
            log_joint = log_joint + prior.log_prob(theta)
            log_joint = log_joint + bijections[name].log_abs_det_jacobian(z[name], theta)
        return -(log_joint + target.evaluate(values))

    return potential, bijections


def _run_chain(target: _LogMarginal, priors: dict, init: dict, options: dict, bar: Any):
    """One NUTS chain: constrained draws {name: (S,)} and per-draw sampler statistics."""
    from pyro.infer import MCMC, NUTS

    potential, bijections = _potential(target, priors)
    stats: dict[str, list] = {
        k: [] for k in ("lp", "step_size", "n_steps", "acceptance_rate", "diverging")
    }
    seen = {"evaluations": target.evaluations, "accept": 0.0, "divergences": 0}

    def hook(kernel: Any, params: Any, stage: str, i: int) -> None:
        bar.update(1)
        steps, seen["evaluations"] = target.evaluations - seen["evaluations"], target.evaluations
        if not stage.startswith("Sample"):
            return
        # Pyro keeps a running mean of the acceptance probability over the draws: undo it
        mean_accept = float(getattr(kernel, "_mean_accept_prob", math.nan))
        accept, seen["accept"] = (i + 1) * mean_accept - i * seen["accept"], mean_accept
        energy = getattr(kernel, "_potential_energy_last", None)
        stats["lp"].append(-float(energy) if energy is not None else math.nan)
        stats["step_size"].append(float(kernel.step_size))
        stats["n_steps"].append(steps)
        stats["acceptance_rate"].append(min(max(accept, 0.0), 1.0))
        divergences = len(kernel.diagnostics()["divergences"])  # post-warmup divergent steps
        stats["diverging"].append(divergences > seen["divergences"])
        seen["divergences"] = divergences

    kernel = NUTS(
        potential_fn=potential,
        target_accept_prob=options["target_accept_prob"],
        max_tree_depth=options["max_tree_depth"],
        jit_compile=False,
    )
    mcmc = MCMC(
        kernel,
        num_samples=options["num_samples"],
        warmup_steps=options["warmup_steps"],
        initial_params={k: bijections[k].inv(v) for k, v in init.items()},
        num_chains=1,
        hook_fn=hook,
        disable_progbar=True,
        transforms={k: b.inv for k, b in bijections.items()},  # Pyro's: constrained -> free
    )
    mcmc.run()
    draws = {k: v.detach().to(torch.float64) for k, v in mcmc.get_samples().items()}
    return draws, {k: np.asarray(v) for k, v in stats.items()}


def _check_options(num_samples, warmup_steps, num_chains, target_accept_prob, max_tree_depth):
    check_num_samples(num_samples)
    for name, value, low in (
        ("warmup_steps", warmup_steps, 0),
        ("num_chains", num_chains, 1),
        ("max_tree_depth", max_tree_depth, 1),
    ):
        if int(value) != value or value < low:
            raise ValueError(f"expected an integer {name} >= {low}, got {value}")
    if not 0.0 < target_accept_prob < 1.0:
        raise ValueError(f"expected 0 < target_accept_prob < 1, got {target_accept_prob}")


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
    import pyro

    check_model(model)
    warmup_steps = num_samples if warmup_steps is None else warmup_steps
    _check_options(num_samples, warmup_steps, num_chains, target_accept_prob, max_tree_depth)
    obs = model._observe(da, dim)
    work = copy.deepcopy(model)
    priors = resolve_priors(work, priors, fixed)
    target = _LogMarginal(work, obs, list(priors))
    options = {
        "num_samples": int(num_samples),
        "warmup_steps": int(warmup_steps),
        "target_accept_prob": float(target_accept_prob),
        "max_tree_depth": int(max_tree_depth),
    }
    *chain_seeds, output_seed = (
        int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(num_chains + 1)
    )
    total = num_chains * (warmup_steps + (2 if predictive else 1) * num_samples)
    runs = []
    with progress_bar(total, "NUTS", progress) as bar, torch.random.fork_rng(devices=[]):
        for chain, chain_seed in enumerate(chain_seeds):
            bar.set_description(f"NUTS chain {chain + 1}/{num_chains}")
            torch.manual_seed(chain_seed)
            init = _initial_values(work, priors, torch.Generator().manual_seed(chain_seed))
            runs.append(_run_chain(target, priors, init, options, bar))
        draws = {k: torch.stack([run[0][k] for run in runs]) for k in priors}
        bar.set_description("replicates")
        outputs = replicate_draws(work, obs, draws, output_seed, bar) if predictive else None
    stats = {k: np.stack([run[1][k] for run in runs]) for k in runs[0][1]}
    posterior = {
        k: xr.DataArray(v.numpy(), dims=("chain", "draw"), attrs={"prior": describe(priors[k])})
        for k, v in draws.items()
    }
    current = model.hyperparameters()
    attrs = make_attrs(
        type(model).__name__,
        current,
        inference_library="pyro",
        inference_library_version=pyro.__version__,
        sampler="NUTS",
        num_chains=int(num_chains),
        seed=int(seed),
        **options,
        priors={k: describe(p) for k, p in priors.items()},
        fixed_hyperparameters={k: v for k, v in current.items() if k not in priors},
    )
    return hyper_inference_data(da, obs, posterior, stats, outputs, attrs)
