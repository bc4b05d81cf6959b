r"""Full Bayesian hyper-parameters of a :class:`~workbench.models.MarkovGP` by NUTS (Pyro).

The Gaussian-likelihood log marginal likelihood :math:`\log p(y \mid \theta)` of a MarkovGP is an
O(T) Kalman filter, differentiable in :math:`\theta`, so NUTS samples

.. math::
    p(\theta \mid y) \propto p(\theta)\, p(y \mid \theta)

directly, with the latent function integrated out exactly. The Pyro model draws each sampled
scalar hyper-parameter from its prior on its natural scale (``pyro.sample(name, prior)``; NUTS
works on the unconstrained scale given by the prior's support) and adds the likelihood with
``pyro.factor("lml", log_marginal_likelihood)``.

Default priors (:func:`default_priors`), centred on the model's *current* values (after
``fit`` these are the maximum marginal-likelihood values, an empirical-Bayes centring; pass
explicit ``priors`` for a fully prior-specified analysis):

========================================  ===========================================
hyper-parameter                           default prior
========================================  ===========================================
positive (lengthscale, outputscale,       ``LogNormal(log v, 1.5)``: ×/÷ 4.5 at one sd
noise)
``*.frequency`` (HM kernels; the kernel   ``LogNormal(log |v|, 1.5)``, ``HalfNormal(1)``
depends on :math:`|\omega|` only)         if v = 0
unconstrained (``mean``, ``slope``)       ``Normal(v, 2 max(|v|, 1))``
========================================  ===========================================
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.data import Observations
from workbench.errors import ValueRangeError
from workbench.io.arviz import check_num_samples, samples_to_inference_data
from workbench.io.attrs import make_attrs
from workbench.progress import progress_bar
from workbench.ssm import sample_state_space_prior

__all__ = ["default_priors", "pointwise_log_likelihood", "sample_hyperparameters"]

_LOG_SD = 1.5  # default prior sd of log(positive hyper-parameter)
_INIT_RADIUS = 1.0  # chains start uniformly within ±1 (unconstrained) of the current values


def _scalar_constraints(model: Any) -> dict[str, Any]:
    """Scalar hyper-parameters, name -> GPyTorch constraint (or None)."""
    return {name: c for name, p, c in model._constrained() if p.numel() == 1}


def default_priors(model: Any, fixed: Iterable[str] = ()) -> dict[str, Any]:
    """The default prior of every scalar hyper-parameter not in ``fixed`` (see the module
    docstring), as Pyro distributions keyed by the names of ``model.hyperparameters()``."""
    import pyro.distributions as dist

    values, out = model.hyperparameters(), {}
    for name, constraint in _scalar_constraints(model).items():
        if name in set(fixed):
            continue
        v = torch.tensor(float(values[name]), dtype=torch.float64)
        lower = -math.inf if constraint is None else float(constraint.lower_bound)
        upper = math.inf if constraint is None else float(constraint.upper_bound)
        if name.rpartition(".")[2] == "frequency" and constraint is None:
            out[name] = (
                dist.LogNormal(v.abs().log(), _LOG_SD) if v != 0 else dist.HalfNormal(v.new_ones(()))
            )
        elif math.isfinite(lower) and math.isfinite(upper):
            out[name] = dist.Uniform(v.new_tensor(lower), v.new_tensor(upper))
        elif math.isfinite(lower) and 0.0 <= lower <= 1e-6 and not math.isfinite(upper):
            out[name] = dist.LogNormal(v.log(), _LOG_SD)
        elif constraint is None:
            out[name] = dist.Normal(v, 2.0 * max(abs(float(v)), 1.0))
        else:
            raise ValueError(
                f"expected an explicit prior for {name!r} (constraint {constraint}), got none"
            )
    return out


def _resolve_priors(model: Any, priors: Mapping | None, fixed: Iterable[str]) -> dict[str, Any]:
    constraints = _scalar_constraints(model)
    priors, fixed = dict(priors or {}), list(fixed)
    names = sorted(constraints)
    unknown = sorted(set(priors) - set(names)) + sorted(set(fixed) - set(names))
    if unknown:
        raise ValueError(f"expected hyper-parameter names among {names}, got unknown {unknown}")
    both = sorted(set(priors) & set(fixed))
    if both:
        raise ValueError(f"expected each name in either `priors` or `fixed`, got both: {both}")
    out = default_priors(model, fixed=[*fixed, *priors])
    for name, prior in priors.items():
        _check_prior(name, prior, constraints[name])
        out[name] = prior
    if not out:
        raise ValueError(f"expected at least one hyper-parameter to sample, got all fixed: {fixed}")
    return {name: out[name] for name in names if name in out}  # model order


def _check_prior(name: str, prior: Any, constraint: Any) -> None:
    if not isinstance(prior, torch.distributions.Distribution):
        raise TypeError(
            f"expected a torch/pyro Distribution as the prior of {name!r}, got "
            f"{type(prior).__name__}"
        )
    if prior.batch_shape != () or prior.event_shape != ():
        raise ValueError(
            f"expected a scalar prior for {name!r}, got batch_shape {tuple(prior.batch_shape)} "
            f"and event_shape {tuple(prior.event_shape)}"
        )
    if constraint is None:
        return
    support = prior.support
    low = float(getattr(support, "lower_bound", -math.inf))
    high = float(getattr(support, "upper_bound", math.inf))
    lower, upper = float(constraint.lower_bound), float(constraint.upper_bound)
    low_ok = low >= lower or (0.0 <= low and lower <= 1e-6)  # e.g. noise > 1e-8, LogNormal
    if not (low_ok and high <= upper):
        raise ValueRangeError(
            f"expected a prior for {name!r} supported within its range ({lower:g}, {upper:g}), "
            f"got support {support} of {type(prior).__name__}; use e.g. LogNormal or Gamma"
        )


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

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self.evaluations += 1
        params = {}
        for name, value in values.items():
            path, param, constraint = self.raw[name]
            value = value.to(param).reshape(param.shape)
            params[path] = value if constraint is None else constraint.inverse_transform(value)
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


def _run_chain(target: _LogMarginal, priors: dict, init: dict, options: dict, bar: Any):
    """One NUTS chain: constrained draws {name: (S,)} and per-draw sampler statistics."""
    import pyro
    from pyro.infer import MCMC, NUTS
    from pyro.infer.autoguide import init_to_value

    def pyro_model() -> None:
        values = {name: pyro.sample(name, prior) for name, prior in priors.items()}
        pyro.factor("lml", target(values))

    stats: dict[str, list] = {k: [] for k in ("lp", "step_size", "n_steps", "acceptance_rate")}
    seen = {"evaluations": 0, "accept": 0.0}

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

    kernel = NUTS(
        pyro_model,
        target_accept_prob=options["target_accept_prob"],
        max_tree_depth=options["max_tree_depth"],
        init_strategy=init_to_value(values=init),
        jit_compile=False,
    )
    mcmc = MCMC(
        kernel,
        num_samples=options["num_samples"],
        warmup_steps=options["warmup_steps"],
        num_chains=1,
        hook_fn=hook,
        disable_progbar=True,
    )
    mcmc.run()
    draws = {k: v.detach().to(torch.float64) for k, v in mcmc.get_samples().items()}
    diverging = np.zeros(options["num_samples"], dtype=bool)
    divergences = mcmc.diagnostics().get("divergences", {}).get("chain 0", [])
    diverging[np.asarray(divergences, dtype=int)] = True
    return draws, {**{k: np.asarray(v) for k, v in stats.items()}, "diverging": diverging}
