"""A shared optimisation loop: Adam, progress bar, divergence detection with rollback."""

from __future__ import annotations

from collections.abc import Callable

import torch

from workbench.errors import FitDivergedError
from workbench.progress import progress_bar

__all__ = ["optimize"]


def optimize(
    module: torch.nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    *,
    steps: int,
    lr: float,
    method: str = "adam",
    progress: bool | None = None,
    desc: str = "fit",
    callback: Callable[[int, float], None] | None = None,
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
    method : {"adam", "lbfgs"}
        The optimiser.
    progress : bool or None
        Show a ``tqdm.auto`` bar (``None``: unless disabled by the environment).
    callback : callable, optional
        Called as ``callback(step, loss)`` after every step (explorers update their bar).

    Returns
    -------
    list of float
        The loss before each step.

    Raises
    ------
    FitDivergedError
        The loss or a parameter became non-finite; parameters are restored to the last finite
        state before raising.
    """
    if steps < 0:
        raise ValueError(f"expected steps >= 0, got {steps}")
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = _optimizer(method, params, lr)
    losses: list[float] = []
    good_state = _snapshot(module)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        if not torch.isfinite(loss):
            _diverged(module, good_state, len(losses), "the loss is not finite")
        loss.backward()
        return loss

    with progress_bar(steps, desc, progress) as bar:
        for step in range(steps):
            value = float(optimizer.step(closure).detach())
            if not all(torch.isfinite(p).all() for p in params):
                _diverged(module, good_state, step, "a parameter is not finite")
            good_state = _snapshot(module)
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}")
            if callback is not None:
                callback(step, value)
    return losses


def _optimizer(method: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if method == "adam":
        return torch.optim.Adam(params, lr=lr)
    if method == "lbfgs":
        return torch.optim.LBFGS(params, lr=lr, max_iter=20, line_search_fn="strong_wolfe")
    raise ValueError(f"expected method in ('adam', 'lbfgs'), got {method!r}")


def _diverged(module: torch.nn.Module, state: dict, step: int, what: str) -> None:
    module.load_state_dict(state)
    raise FitDivergedError(
        f"expected a finite optimisation, got divergence at step {step} ({what}); parameters were "
        "restored to the last finite values. Try a smaller `lr`, rescaling the data, or initial "
        "hyper-parameters closer to the data's scales"
    )


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
