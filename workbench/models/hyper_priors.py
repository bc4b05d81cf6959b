r"""Priors for NUTS over a model's hyper-parameters: defaults, checks, descriptions.

Shared by :class:`~workbench.models.MarkovGP` (scalar hyper-parameters) and
:class:`~workbench.models.MultitaskGP` (per-task vectors too). A hyper-parameter with one
element is a scalar (shape ``()``); a vector or matrix one keeps its parameter's shape, and its
prior acts elementwise: a scalar distribution (applied independently to every element) or one
with that ``batch_shape``.

Default priors are centred on the model's *current* values v (after ``fit`` these are the
maximum marginal-likelihood values: an empirical-Bayes centring; pass explicit ``priors`` for a
fully prior-specified analysis), elementwise for vectors:

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
from typing import Any, NamedTuple

import torch

from workbench.errors import ValueRangeError

__all__ = [
    "Slot",
    "default_priors",
    "describe",
    "hyperparameter_slots",
    "inside",
    "resolve_priors",
    "set_draw",
]

_LOG_SD = 1.5  # default prior sd of log(positive hyper-parameter)


class Slot(NamedTuple):
    """A hyper-parameter that NUTS may sample: its shape and GPyTorch constraint."""

    shape: torch.Size  # () for a one-element parameter, else the parameter's shape
    constraint: Any  # a GPyTorch Interval (GreaterThan, Positive, ...) or None


def hyperparameter_slots(model: Any, names: Iterable[str] | None = None) -> dict[str, Slot]:
    """``{name: Slot}`` in ``model.hyperparameters()`` order: the listed ``names``, or (None)
    every scalar hyper-parameter."""
    wanted = None if names is None else set(names)
    out = {}
    for name, param, constraint in model._constrained():
        if (param.numel() == 1) if wanted is None else (name in wanted):
            shape = torch.Size(()) if param.numel() == 1 else param.shape
            out[name] = Slot(shape, constraint)
    return out


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


def set_draw(model: Any, name: str, value: Any) -> None:
    """Set hyper-parameter ``name`` of ``model`` to a drawn ``value`` (a float, or an array of
    the hyper-parameter's shape; see :func:`inside`)."""
    constraint = dict((n, c) for n, _, c in model._constrained())[name]
    value = torch.as_tensor(value, dtype=torch.float64)
    if constraint is not None:
        value = inside(value, constraint)
    model.set_hyperparameter(name, float(value) if value.numel() == 1 else value)


def default_priors(
    model: Any, fixed: Iterable[str] = (), *, names: Iterable[str] | None = None
) -> dict[str, Any]:
    """The default prior of every hyper-parameter in ``names`` (None: every scalar one) not in
    ``fixed`` (see the module docstring), as Pyro distributions keyed by the names of
    ``model.hyperparameters()``; a vector hyper-parameter's prior has its shape as
    ``batch_shape``."""
    values, out = model.hyperparameters(), {}
    fixed = {fixed} if isinstance(fixed, str) else set(fixed)
    for name, slot in hyperparameter_slots(model, names).items():
        if name not in fixed:
            v = torch.as_tensor(values[name], dtype=torch.float64).reshape(slot.shape)
            out[name] = _default_prior(name, v, slot.constraint)
    return out


def _default_prior(name: str, v: torch.Tensor, constraint: Any) -> Any:
    import pyro.distributions as dist

    lower = -math.inf if constraint is None else float(constraint.lower_bound)
    upper = math.inf if constraint is None else float(constraint.upper_bound)
    if name.rpartition(".")[2] == "frequency" and constraint is None:
        if bool((v != 0).all()):
            return dist.LogNormal(v.abs().log(), _LOG_SD)
        return dist.HalfNormal(torch.ones_like(v))
    if math.isfinite(lower) and math.isfinite(upper):
        prior = dist.Uniform(v.new_tensor(lower), v.new_tensor(upper))
        return prior.expand(v.shape) if v.shape else prior
    if math.isfinite(lower) and 0.0 <= lower <= 1e-6 and not math.isfinite(upper):
        return dist.LogNormal(v.log(), _LOG_SD)
    if constraint is None:
        return dist.Normal(v, 2.0 * v.abs().clamp_min(1.0))
    raise ValueError(f"expected an explicit prior for {name!r} (constraint {constraint}), got none")


def describe(prior: Any) -> str:
    """A distribution with its parameter values (``repr`` omits LogNormal's); a parameter
    equal over a batch is written once, others as a flat list.

    Examples
    --------
    >>> import pyro.distributions as dist
    >>> describe(dist.LogNormal(0.5, 1.5))
    'LogNormal(loc=0.5, scale=1.5)'
    >>> describe(dist.LogNormal(torch.tensor([0.5, 2.0]), 1.5))
    'LogNormal(loc=[0.5, 2], scale=1.5)'
    """
    args = []
    for key in getattr(prior, "arg_constraints", {}):
        value = getattr(prior, key, None)
        if isinstance(value, torch.Tensor) and value.numel() >= 1:
            flat = value.detach().flatten()
            if bool((flat == flat[0]).all()):
                args.append(f"{key}={float(flat[0]):.6g}")
            else:
                args.append(f"{key}=[{', '.join(f'{float(x):.6g}' for x in flat)}]")
    return f"{type(prior).__name__}({', '.join(args)})"


def resolve_priors(
    model: Any,
    priors: Mapping | None,
    fixed: Iterable[str],
    *,
    candidates: Iterable[str] | None = None,
    defaults: Iterable[str] | None = None,
) -> dict[str, Any]:
    """``{name: prior}`` of every sampled hyper-parameter, in ``model.hyperparameters()``
    order: the given ``priors`` (checked), defaults for the others, none for ``fixed``.

    ``candidates`` are the names that may be sampled and ``defaults`` those sampled unless
    fixed (None: every scalar hyper-parameter, for both); a candidate outside ``defaults`` is
    sampled only with an explicit prior.
    """
    if priors is not None and not isinstance(priors, Mapping):
        raise TypeError(f"expected priors as a mapping {{name: distribution}}, got {priors!r}")
    slots = hyperparameter_slots(model, candidates)
    priors = dict(priors or {})
    fixed = [fixed] if isinstance(fixed, str) else list(fixed)
    unknown = sorted(set(priors) - set(slots)) + sorted(set(fixed) - set(slots))
    if unknown:
        what = "scalar hyper-parameter" if candidates is None else "hyper-parameter"
        raise ValueError(f"expected {what} names among {list(slots)}, got {unknown}")
    both = sorted(set(priors) & set(fixed))
    if both:
        raise ValueError(f"expected each name in either `priors` or `fixed`, got both: {both}")
    defaults = slots if defaults is None else [n for n in defaults if n in slots]
    out = default_priors(model, fixed=[*fixed, *priors], names=defaults)
    for name, prior in priors.items():
        _check_prior(name, prior, slots[name])
        shape = slots[name].shape
        out[name] = prior.expand(shape) if prior.batch_shape != shape else prior
    if not out:
        raise ValueError(f"expected at least one hyper-parameter to sample, got all fixed: {fixed}")
    return {name: out[name] for name in slots if name in out}


def _check_prior(name: str, prior: Any, slot: Slot) -> None:
    if not isinstance(prior, torch.distributions.Distribution):
        raise TypeError(
            f"expected a torch/pyro Distribution as the prior of {name!r}, got "
            f"{type(prior).__name__}"
        )
    if prior.batch_shape not in ((), slot.shape) or prior.event_shape != ():
        shapes = "" if slot.shape == () else f" or one of batch_shape {tuple(slot.shape)}"
        raise ValueError(
            f"expected a scalar prior{shapes} for {name!r}, got batch_shape "
            f"{tuple(prior.batch_shape)} and event_shape {tuple(prior.event_shape)}"
        )
    constraint = slot.constraint
    if constraint is None:
        return
    support = prior.support
    low = float(torch.as_tensor(getattr(support, "lower_bound", -math.inf)).min())
    high = float(torch.as_tensor(getattr(support, "upper_bound", math.inf)).max())
    lower, upper = float(constraint.lower_bound), float(constraint.upper_bound)
    low_ok = low >= lower or (0.0 <= low and lower <= 1e-6)  # e.g. noise > 1e-8, LogNormal
    if not (low_ok and high <= upper):
        raise ValueRangeError(
            f"expected a prior for {name!r} supported within its range ({lower:g}, {upper:g}), "
            f"got support {support} of {type(prior).__name__}; use e.g. LogNormal or Gamma"
        )
