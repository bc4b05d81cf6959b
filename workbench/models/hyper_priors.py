r"""Priors for NUTS over a MarkovGP's hyper-parameters: defaults, checks, descriptions.

Default priors are centred on the model's *current* values v (after ``fit`` these are the
maximum marginal-likelihood values: an empirical-Bayes centring; pass explicit ``priors`` for a
fully prior-specified analysis):

========================================  ===========================================
hyper-parameter                           default prior
========================================  ===========================================
positive (lengthscale, outputscale,       ``LogNormal(log v, 1.5)``: ×/÷ 4.5 at one sd
noise)
``*.frequency`` (HM kernels; the kernel   ``LogNormal(log |v|, 1.5)``, or ``HalfNormal(1)``
depends on :math:`|\omega|` only)         if v = 0
bounded to (a, b)                         ``Uniform(a, b)``
unconstrained (``mean``, ``slope``)       ``Normal(v, 2 max(|v|, 1))``
========================================  ===========================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from workbench.errors import ValueRangeError

__all__ = ["default_priors", "describe", "inside", "resolve_priors", "set_draw"]

_LOG_SD = 1.5  # default prior sd of log(positive hyper-parameter)


def _scalar_constraints(model: Any) -> dict[str, Any]:
    """Scalar hyper-parameters, name -> GPyTorch constraint (or None)."""
    return {name: c for name, p, c in model._constrained() if p.numel() == 1}


def inside(value: torch.Tensor, constraint: Any) -> torch.Tensor:
    """``value`` moved strictly inside the constraint's interval (by a relative 1e-9).

    A prior may put mass where the model cannot go (a LogNormal noise prior below the 1e-8
    noise floor); there the model, and so the likelihood, stays at the floor.
    """
    lower, upper = float(constraint.lower_bound), float(constraint.upper_bound)
    tiny = torch.finfo(value.dtype).tiny
    if math.isfinite(lower):
        value = value.clamp_min(lower + 1e-9 * abs(lower) + tiny)
    if math.isfinite(upper):
        value = value.clamp_max(upper - 1e-9 * abs(upper) - tiny)
    return value


def set_draw(model: Any, name: str, value: float) -> None:
    """Set hyper-parameter ``name`` of ``model`` to a drawn ``value`` (see :func:`inside`)."""
    constraint = dict((n, c) for n, _, c in model._constrained())[name]
    if constraint is not None:
        value = float(inside(torch.tensor(value, dtype=torch.float64), constraint))
    model.set_hyperparameter(name, value)


def default_priors(model: Any, fixed: Iterable[str] = ()) -> dict[str, Any]:
    """The default prior of every scalar hyper-parameter not in ``fixed`` (see the module
    docstring), as Pyro distributions keyed by the names of ``model.hyperparameters()``."""
    import pyro.distributions as dist

    values, out = model.hyperparameters(), {}
    fixed = {fixed} if isinstance(fixed, str) else set(fixed)
    for name, constraint in _scalar_constraints(model).items():
        if name in fixed:
            continue
        v = torch.tensor(float(values[name]), dtype=torch.float64)
        lower = -math.inf if constraint is None else float(constraint.lower_bound)
        upper = math.inf if constraint is None else float(constraint.upper_bound)
        if name.rpartition(".")[2] == "frequency" and constraint is None:
            out[name] = (
                dist.LogNormal(v.abs().log(), _LOG_SD)
                if v != 0
                else dist.HalfNormal(v.new_ones(()))
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


def describe(prior: Any) -> str:
    """A distribution with its parameter values (``repr`` omits LogNormal's).

    Examples
    --------
    >>> import pyro.distributions as dist
    >>> describe(dist.LogNormal(0.5, 1.5))
    'LogNormal(loc=0.5, scale=1.5)'
    """
    args = []
    for key in getattr(prior, "arg_constraints", {}):
        value = getattr(prior, key, None)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            args.append(f"{key}={float(value):.6g}")
    return f"{type(prior).__name__}({', '.join(args)})"


def resolve_priors(model: Any, priors: Mapping | None, fixed: Iterable[str]) -> dict[str, Any]:
    """``{name: prior}`` of every sampled hyper-parameter, in ``model.hyperparameters()``
    order: the given ``priors`` (checked), defaults for the others, none for ``fixed``."""
    if priors is not None and not isinstance(priors, Mapping):
        raise TypeError(f"expected priors as a mapping {{name: distribution}}, got {priors!r}")
    constraints = _scalar_constraints(model)
    priors = dict(priors or {})
    fixed = [fixed] if isinstance(fixed, str) else list(fixed)
    unknown = sorted(set(priors) - set(constraints)) + sorted(set(fixed) - set(constraints))
    if unknown:
        raise ValueError(
            f"expected scalar hyper-parameter names among {list(constraints)}, got {unknown}"
        )
    both = sorted(set(priors) & set(fixed))
    if both:
        raise ValueError(f"expected each name in either `priors` or `fixed`, got both: {both}")
    out = default_priors(model, fixed=[*fixed, *priors])
    for name, prior in priors.items():
        _check_prior(name, prior, constraints[name])
        out[name] = prior
    if not out:
        raise ValueError(f"expected at least one hyper-parameter to sample, got all fixed: {fixed}")
    return {name: out[name] for name in constraints if name in out}


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
