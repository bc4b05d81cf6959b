"""A shared optimisation loop: Adam or L-BFGS, progress bar, rollback and restart on divergence."""

from __future__ import annotations

from collections.abc import Callable

import torch

from workbench.errors import FitDivergedError
from workbench.progress import progress_bar

__all__ = ["MAX_RESTARTS", "optimize"]

MAX_RESTARTS = 3


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
        The loss or a parameter stayed non-finite (or a factorisation kept failing) through
        ``MAX_RESTARTS`` restarts; parameters are restored to the last finite state first.

    Notes
    -----
    A step that yields a non-finite loss or parameter, or a ``LinAlgError`` (e.g. an L-BFGS
    line search probing an extreme lengthscale), is undone: parameters return to the last finite
    state and the optimiser restarts with a 10x smaller learning rate.
    """
    if steps < 0:
        raise ValueError(f"expected steps >= 0, got {steps}")
    if params is None:
        params = [p for p in module.parameters() if p.requires_grad]
    opt = _optimizer(optimizer, params, lr, max_iter)
    losses: list[float] = []
    good_state, restarts = _snapshot(module), 0
    with progress_bar(steps, desc, progress) as bar:
        for step in range(steps):
            try:
                value = _step(opt, params, loss_fn)
            except _NonFinite as err:
                module.load_state_dict(good_state)
                restarts += 1
                if restarts > MAX_RESTARTS:
                    _diverged(step, restarts - 1, str(err))
                opt = _optimizer(optimizer, params, lr * 0.1**restarts, max_iter)
                continue
            good_state = _snapshot(module)
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}")
            if callback is not None:
                callback(step, value)
    return losses


class _NonFinite(Exception):
    """A step produced a non-finite loss or parameter, or a failed factorisation."""


def _step(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    loss_fn: Callable[[], torch.Tensor],
) -> float:
    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        try:
            loss = loss_fn()
        except torch.linalg.LinAlgError as err:
            raise _NonFinite(f"a factorisation failed: {err}") from err
        if not torch.isfinite(loss):
            raise _NonFinite("the loss is not finite")
        loss.backward()
        return loss

    value = float(optimizer.step(closure).detach())
    if not all(torch.isfinite(p).all() for p in params):
        raise _NonFinite("a parameter is not finite")
    return value


def _optimizer(
    name: str, params: list[torch.Tensor], lr: float, max_iter: int = 20
) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "lbfgs":
        return torch.optim.LBFGS(params, lr=lr, max_iter=max_iter, line_search_fn="strong_wolfe")
    raise ValueError(f"expected optimizer in ('adam', 'lbfgs'), got {name!r}")


def _diverged(step: int, restarts: int, what: str) -> None:
    raise FitDivergedError(
        f"expected a finite optimisation, got divergence at step {step} ({what}) after "
        f"{restarts} restarts from the last finite state with 10x smaller steps; parameters were "
        "restored to the last finite values. Try a smaller `lr`, rescaling the data, or initial "
        "hyper-parameters closer to the data's scales"
    )


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
