"""A shared optimisation loop: Adam or L-BFGS, progress bar, rollback and restart on divergence."""

from __future__ import annotations

from collections.abc import Callable

import torch

from workbench.models.divergence import MAX_RESTARTS, Divergence, DivergenceGuard
from workbench.progress import progress_bar

__all__ = ["ADVICE", "MAX_RESTARTS", "optimize", "require_progress"]

#: What to try when an optimisation keeps diverging (the end of ``FitDivergedError``).
ADVICE = (
    "Try a smaller `lr`, rescaling the data, or initial hyper-parameters closer to the data's "
    "scales"
)


def optimize(
    module: torch.nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    *,
    steps: int,
    lr: float,
    optimizer: str = "adam",
    progress: bool | None = None,
    desc: str = "fit",
    callback: Callable[[int, float], None] | None = None,
    params: list[torch.nn.Parameter] | None = None,
    max_iter: int = 20,
) -> list[float]:
    """Minimise ``loss_fn()`` over ``module``'s parameters with Adam or L-BFGS.

    Parameters
    ----------
    module : torch.nn.Module
        Owner of the parameters to optimise.
    loss_fn : callable
        Returns a scalar loss tensor (recomputed each step).
    steps : int
        Number of Adam steps, or of L-BFGS iterations (each up to 20 loss evaluations).
    lr : float
        Learning rate (Adam) or initial step length (L-BFGS with a strong-Wolfe line search).
    optimizer : {"adam", "lbfgs"}
        The optimiser.
    progress : bool or None
        Show a ``tqdm.auto`` bar (``None``: unless disabled by the environment).
    callback : callable, optional
        Called as ``callback(step, loss)`` after every step (explorers update their bar).
    params : list of Parameter, optional
        Optimise only these (default: every parameter of ``module`` that requires grad).
    max_iter : int
        L-BFGS iterations inside one step (EM M-steps take one short step).

    Returns
    -------
    list of float
        The loss before each step.

    Raises
    ------
    FitDivergedError
        Steps kept diverging through ``MAX_RESTARTS`` restarts; parameters are restored to the
        last good state first, and the message says what to try.

    Notes
    -----
    A step diverges when the loss, a gradient, a parameter or a buffer is not finite, a
    constrained hyper-parameter leaves its constraint (a lengthscale or variance that
    underflowed to 0, an outputscale that overflowed to inf) or explodes (its raw value crosses
    1/eps of its dtype, beyond which steps of order one cannot move it: e.g. a raw lengthscale
    sent to 1e30), or a factorisation fails (``LinAlgError``, e.g. an L-BFGS line search probing an
    extreme lengthscale); see :mod:`workbench.models.divergence`. A diverged step is undone:
    the module returns to the last good state and the optimiser restarts with a 10x smaller
    learning rate (the step counts; its loss is not recorded).
    """
    if steps < 0:
        raise ValueError(f"expected steps >= 0, got {steps}")
    if params is None:
        params = [p for p in module.parameters() if p.requires_grad]
    opt = _optimizer(optimizer, params, lr, max_iter)
    losses: list[float] = []
    owned = {id(p) for p in module.parameters()}
    extra = [p for p in params if id(p) not in owned]  # restored on rollback as well
    guard = DivergenceGuard(
        module, label="optimisation", advice=ADVICE,
        save=lambda: [p.detach().clone() for p in extra], load=lambda saved: _restore(extra, saved),
    )  # fmt: skip
    with progress_bar(steps, desc, progress) as bar:
        for step in range(steps):
            with guard.attempt(step) as attempt:
                value = _step(opt, params, loss_fn)
            if not attempt.ok:
                opt = _optimizer(optimizer, params, lr * guard.scale, max_iter)
                continue
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}")
            if callback is not None:
                callback(step, value)
    return losses


def require_progress(losses: list[float], steps: int, what: str = "the M-step") -> None:
    """Raise :class:`~workbench.models.divergence.Divergence` when every one of ``steps`` > 0
    steps of :func:`optimize` diverged (rolled back): an EM loop then rolls back its round."""
    if steps > 0 and not losses:
        raise Divergence(f"every step of {what} diverged")


def _step(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    loss_fn: Callable[[], torch.Tensor],
) -> float:
    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise Divergence("the loss is not finite")
        loss.backward()
        if not all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params):
            raise Divergence("a gradient is not finite")
        return loss

    value = float(optimizer.step(closure).detach())
    if not all(bool(torch.isfinite(p).all()) for p in params):
        raise Divergence("a parameter is not finite")
    return value


def _restore(params: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for param, value in zip(params, saved, strict=True):
            param.copy_(value)


def _optimizer(
    name: str, params: list[torch.Tensor], lr: float, max_iter: int = 20
) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "lbfgs":
        return torch.optim.LBFGS(params, lr=lr, max_iter=max_iter, line_search_fn="strong_wolfe")
    raise ValueError(f"expected optimizer in ('adam', 'lbfgs'), got {name!r}")
