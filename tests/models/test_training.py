"""The shared optimisation loop: convergence, callbacks, divergence rollback."""

from __future__ import annotations

import pytest
import torch

from workbench.errors import FitDivergedError
from workbench.models.training import optimize


class _Quadratic(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))


@pytest.mark.parametrize(("method", "lr", "steps"), [("adam", 0.1, 300), ("lbfgs", 1.0, 5)])
def test_optimize_converges_and_reports_losses(method, lr, steps):
    module, seen = _Quadratic(), []
    losses = optimize(
        module,
        lambda: module.w.square().sum(),
        steps=steps,
        lr=lr,
        optimizer=method,
        progress=False,
        callback=lambda step, loss: seen.append(step),
    )
    assert len(losses) == steps and seen == list(range(steps))
    assert losses[0] == pytest.approx(13.0)
    assert module.w.detach().abs().max().item() < 1e-3


def test_nan_loss_restores_last_finite_state_and_raises():
    module = _Quadratic()
    calls = []

    def loss():
        calls.append(1)
        return module.w.square().sum() if len(calls) < 4 else module.w.sum() * float("nan")

    with pytest.raises(FitDivergedError, match=r"step 6.*3 restarts.*smaller `lr`"):
        optimize(module, loss, steps=10, lr=0.1, progress=False)
    after_three = _Quadratic()
    optimize(after_three, lambda: after_three.w.square().sum(), steps=3, lr=0.1, progress=False)
    assert torch.equal(module.w, after_three.w)


def test_bad_arguments():
    module = _Quadratic()
    with pytest.raises(ValueError, match="steps"):
        optimize(module, lambda: module.w.sum(), steps=-1, lr=0.1)
    with pytest.raises(ValueError, match="optimizer"):
        optimize(module, lambda: module.w.sum(), steps=1, lr=0.1, optimizer="sgd")


def test_a_failed_step_restarts_from_the_last_good_state_with_smaller_steps():
    module = _Quadratic()
    calls = []

    def loss():
        calls.append(1)
        if len(calls) == 3:  # one transient failure, as a line search probing a bad point
            raise torch.linalg.LinAlgError("not positive definite")
        return module.w.square().sum()

    losses = optimize(module, loss, steps=50, lr=0.1, progress=False)
    assert len(losses) == 49  # the failed step is dropped, the rest run
    assert losses[2] == losses[1] or losses[2] < losses[1]
    assert module.w.detach().abs().max().item() < 3.0
