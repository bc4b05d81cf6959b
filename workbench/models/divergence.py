r"""Divergence detection shared by every fit loop: non-finite values, exploded
hyper-parameters, rollback to the last good state and restarts with smaller steps.

:func:`~workbench.models.training.optimize` runs its steps through a :class:`DivergenceGuard`;
loops that are not one optimiser (variational EM, Pyro SVI, minibatch epochs) wrap each round
in :meth:`DivergenceGuard.attempt` and scale their step sizes (learning rates, CVI damping) by
:attr:`DivergenceGuard.scale`.

A state is **diverged** when

* the objective, a gradient, a parameter or a floating-point buffer is not finite;
* a constrained hyper-parameter's natural value (``constraint.transform(raw)``) is not finite,
  lies outside the constraint's range, or is exactly 0 where the constraint is
  :math:`(0, \infty)` (a softplus that underflowed: a zero lengthscale or variance makes the
  kernel singular);
* a constrained hyper-parameter **exploded**: its raw value crossed :math:`1/\epsilon` of its
  dtype (4.5e15 in float64, 8.4e6 in float32) during the step. Past that bound steps of order
  one no longer change the raw value in floating point (:math:`r + 0.5` rounds to :math:`r`)
  and a sigmoid-constrained value is pinned to its bound, so the optimiser cannot bring the
  parameter back: it has lost it (e.g. an L-BFGS line search that sent a raw lengthscale to
  1e30, where the kernel is numerically constant and its gradient vanishes). Only crossings
  count, so a parameter that legitimately starts beyond the bound (a variance of 1e20 for data
  in large units) is left alone;
* a numerical routine failed: ``torch.linalg.LinAlgError`` (a failed Cholesky),
  ``NotPSDError``, ``FloatingPointError`` (e.g. CVI's non-finite ELBO), a distribution
  rejecting non-finite arguments, or a :class:`~workbench.errors.FitDivergedError` of an inner
  optimisation (an M-step).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gpytorch
import torch
from linear_operator.utils.errors import NotPSDError

from workbench.errors import FitDivergedError, ValueRangeError

__all__ = [
    "MAX_RESTARTS",
    "Attempt",
    "Divergence",
    "DivergenceGuard",
    "check_finite",
    "check_hyperparameters",
    "check_moments",
    "check_value",
    "state_problem",
]

MAX_RESTARTS = 3

_NUMERICAL = (torch.linalg.LinAlgError, NotPSDError, FloatingPointError, FitDivergedError)


class Divergence(Exception):
    """A step diverged (see the module docstring); a guard rolls it back."""


def check_finite(value: float | torch.Tensor, what: str) -> None:
    """Raise :class:`Divergence` unless ``value`` is finite everywhere."""
    ok = bool(torch.isfinite(value).all()) if torch.is_tensor(value) else math.isfinite(value)
    if not ok:
        raise Divergence(f"{what} is not finite")


def _constrained(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor, Any]]:
    for owner_name, owner in module.named_modules():
        for leaf, param in owner.named_parameters(recurse=False):
            name = f"{owner_name}.{leaf}" if owner_name else leaf
            yield name, param, getattr(owner, f"{leaf}_constraint", None)


def _range(constraint: Any) -> str:
    low, high = float(constraint.lower_bound.min()), float(constraint.upper_bound.max())
    if math.isinf(low) and math.isinf(high):
        return "finite"
    if math.isinf(high):
        return f"> {low:g}"
    return f"< {high:g}" if math.isinf(low) else f"in ({low:g}, {high:g})"


def _invalid(name: str, raw: torch.Tensor, constraint: Any) -> str | None:
    """Why the natural value of ``raw`` is invalid, or None."""
    raw = raw.detach()
    enforced = constraint is not None and constraint.enforced
    value = constraint.transform(raw) if enforced else raw
    shown = name.replace("raw_", "")
    if not bool(torch.isfinite(value).all()) or not (enforced or bool(torch.isfinite(raw).all())):
        return f"expected a finite {shown}, got {_show(value)}"
    if not enforced:
        return None
    low, high = constraint.lower_bound.to(value), constraint.upper_bound.to(value)
    outside = (value < low) | (value > high) | ((low == 0) & (value == 0)) | ~torch.isfinite(raw)
    if bool(outside.any()):
        return f"expected {shown} {_range(constraint)}, got {_show(value)}"
    return None


def _show(value: torch.Tensor) -> str:
    flat = value.reshape(-1)
    return f"{flat.item():g}" if flat.numel() == 1 else str([float(v) for v in flat[:6]])


def state_problem(
    module: torch.nn.Module, before: dict[str, torch.Tensor] | None = None
) -> str | None:
    """The first reason why ``module``'s state has diverged (module docstring), or None.

    ``before`` (a ``state_dict``) is the last good state: raw values that crossed
    :math:`1/\\epsilon` since then count as exploded.
    """
    for name, raw, constraint in _constrained(module):
        problem = _invalid(name, raw, constraint)
        if problem is not None:
            return problem
        if constraint is None or before is None or name not in before:
            continue
        limit = 1.0 / torch.finfo(raw.dtype).eps
        if bool((raw.detach().abs() > limit).any() and not (before[name].abs() > limit).any()):
            return f"{name} exploded to {_show(raw.detach().abs().max())} (beyond 1/eps)"
    for owner_name, owner in module.named_modules():
        if isinstance(owner, gpytorch.constraints.Interval):
            continue  # a constraint's bounds may be infinite
        for leaf, buffer in owner.named_buffers(recurse=False):
            if buffer.is_floating_point() and not bool(torch.isfinite(buffer).all()):
                return f"buffer {owner_name}.{leaf} is not finite".replace(" .", " ")
    return None


def check_moments(*moments: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``moments`` (posterior means, variances, memberships), or
    :class:`~workbench.errors.FitDivergedError` if any is NaN or infinite: a posterior is
    never returned with NaN values silently (NaN kept by design, e.g. bins outside a trial,
    must be masked before the check)."""
    if not all(bool(torch.isfinite(m).all()) for m in moments):
        raise FitDivergedError(
            "expected finite posterior moments, got NaN/inf; the hyper-parameters are degenerate "
            "for this data: refit with a smaller learning rate, rescale the data, or set initial "
            "hyper-parameters closer to the data's scales"
        )
    return moments


def check_hyperparameters(module: torch.nn.Module, what: str) -> None:
    """:class:`~workbench.errors.ValueRangeError` unless every parameter of ``module`` is
    finite and every constrained hyper-parameter lies inside its constraint (e.g. a GPyTorch
    kernel given ``lengthscale=0`` or ``inf``)."""
    for name, raw, constraint in _constrained(module):
        problem = _invalid(f"{what}.{name}", raw, constraint)
        if problem is not None:
            raise ValueRangeError(problem)


def check_value(name: str, value: torch.Tensor, constraint: Any) -> None:
    """:class:`~workbench.errors.ValueRangeError` unless the natural ``value`` is finite and
    strictly inside ``constraint``'s range (its bounds map to infinite raw values)."""
    ok = bool(torch.isfinite(value).all())
    if ok and constraint is not None and constraint.enforced:
        low, high = constraint.lower_bound.to(value), constraint.upper_bound.to(value)
        ok = bool(((value > low) & (value < high)).all())
    if not ok:
        wanted = _range(constraint) if constraint is not None else "finite"
        raise ValueRangeError(f"expected {name} {wanted}, got {_show(value)}")


class Attempt:
    """Outcome of one guarded step: ``ok`` is True once it was committed."""

    ok: bool = False


class DivergenceGuard:
    """The last good state of ``module`` during a fit, rolled back to when a step diverges.

    Parameters
    ----------
    module : torch.nn.Module
        Its ``state_dict`` (parameters and buffers) is the state.
    label, unit : str
        Wording of the error ("expected a finite {label}, got divergence at {unit} {step}").
    advice : str
        What to try, appended to the error.
    save, load : callable, optional
        Extra state outside the module (e.g. variational tensors): ``save()`` returns a copy
        and ``load(copy)`` restores it.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        label: str = "fit",
        unit: str = "step",
        advice: str = "",
        save: Callable[[], Any] | None = None,
        load: Callable[[Any], None] | None = None,
    ) -> None:
        self.module, self.label, self.unit, self.advice = module, label, unit, advice
        self._save, self._load = save, load
        self.restarts = 0
        self._commit()

    @property
    def scale(self) -> float:
        """Factor on step sizes for the next attempt: :math:`10^{-\\text{restarts}}`."""
        return 0.1**self.restarts

    def check(self) -> None:
        """Raise :class:`Divergence` if the module's current state has diverged."""
        problem = state_problem(self.module, self._state)
        if problem is not None:
            raise Divergence(problem)

    @contextmanager
    def attempt(self, step: int) -> Iterator[Attempt]:
        """Run one step: committed if it ends in a good state, otherwise rolled back (the
        block's divergence is swallowed) and ``ok`` stays False. Raises
        :class:`~workbench.errors.FitDivergedError` after ``MAX_RESTARTS`` rollbacks."""
        outcome = Attempt()
        try:
            yield outcome
            self.check()
        except Exception as err:  # only numerical failures are swallowed (re-raised below)
            if not _is_numerical(err):
                raise
            self._rollback(step, getattr(err, "reason", None) or str(err) or repr(err), err)
            return
        outcome.ok = True
        self._commit()

    def _commit(self) -> None:
        self._state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self._extra = self._save() if self._save is not None else None

    def _rollback(self, step: int, what: str, err: Exception) -> None:
        self.module.load_state_dict(self._state)
        if self._load is not None:
            self._load(self._extra)
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            error = FitDivergedError(
                f"expected a finite {self.label}, got divergence at {self.unit} {step} ({what}) "
                f"after {self.restarts - 1} restarts from the last finite state with 10x "
                f"smaller steps; parameters were restored to the last finite values. "
                f"{self.advice}".rstrip()
            )
            error.reason = f"{self.label} {self.unit} {step}: {what}"  # for an enclosing guard
            raise error from err


def _is_numerical(err: Exception) -> bool:
    if isinstance(err, (Divergence, *_NUMERICAL)):
        return True
    # torch.distributions (and Pyro) reject non-finite arguments with this ValueError
    return isinstance(err, ValueError) and "found invalid values" in str(err)
