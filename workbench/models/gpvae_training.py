"""The SVI loop of the GP-VAEs: minibatches of trials, modality dropout, a decaying rate."""

from __future__ import annotations

import warnings
from typing import Any

import pyro
import torch

from workbench.data.multimodal import TrialData
from workbench.models.divergence import DivergenceGuard, check_finite
from workbench.models.rng import forked_rng
from workbench.progress import progress_bar

__all__ = ["ADVICE", "check_schedule", "train_svi"]

#: What to try when SVI keeps diverging (the end of ``FitDivergedError``).
ADVICE = "Try a smaller lr (and final_lr), a larger batch_size, or rescaling the data"


def check_schedule(lr: float, final_lr: float, modality_dropout: float) -> None:
    """Bad optimiser settings fail before anything is built."""
    if not 0 < final_lr <= lr:
        raise ValueError(f"expected 0 < final_lr <= lr = {lr}, got {final_lr}")
    if not 0.0 <= modality_dropout < 1.0:
        raise ValueError(f"expected 0 <= modality_dropout < 1, got {modality_dropout}")


def train_svi(
    model: Any,
    prepared: TrialData,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    final_lr: float,
    modality_dropout: float,
    progress: bool | None,
    callback: Any,
) -> None:
    """Run ``epochs`` epochs of Pyro SVI on ``model._model``/``model._guide`` (see
    :meth:`workbench.models.MultimodalGPVAE.fit`), appending to ``model.elbo_trace``.

    A step whose ELBO, gradients or parameters are not finite is rolled back and SVI restarts
    with a 10x smaller rate (:class:`~workbench.models.divergence.DivergenceGuard`)."""
    check_schedule(lr, final_lr, modality_dropout)
    arrays, n_bins, n = prepared.modalities, len(prepared.time), len(prepared.trials)
    decay = (final_lr / lr) ** (1 / max(1, epochs * -(-n // batch_size)))  # per step

    def make_svi(rate: float) -> pyro.infer.SVI:
        optim = pyro.optim.ClippedAdam({"lr": rate, "lrd": decay, "clip_norm": 10.0})
        return pyro.infer.SVI(model._model, model._guide, optim, pyro.infer.TraceMeanField_ELBO())

    svi = make_svi(lr)
    guard = DivergenceGuard(model, unit="epoch", advice=ADVICE)
    start = model.seed + len(model.elbo_trace)
    gen = torch.Generator().manual_seed(start)
    with (
        forked_rng(),
        warnings.catch_warnings(),
        progress_bar(epochs, type(model).__name__, progress) as bar,
    ):
        # a frozen lengthscale is simply not trained; Pyro warns about it at every step
        warnings.filterwarnings("ignore", "raw_lengthscale was not registered")
        torch.manual_seed(start)  # Pyro draws from torch's global generator
        for epoch in range(epochs):
            total = 0.0
            for batch in torch.randperm(n, generator=gen).split(batch_size):
                sub = {
                    m: a._replace(values=a.values[batch], observed=a.observed[batch])
                    for m, a in arrays.items()
                }
                encode = None
                if len(sub) > 1 and float(torch.rand((), generator=gen)) < modality_dropout:
                    names = list(sub)
                    encode = [names[int(torch.randint(len(names), (), generator=gen))]]
                with guard.attempt(epoch) as attempt:  # a diverged step is rolled back
                    loss = svi.step(sub, n, n_bins, True, encode)
                    check_finite(loss, "the ELBO")
                if not attempt.ok:
                    svi = make_svi(lr * guard.scale)  # fresh optimiser states, smaller steps
                    continue
                total += loss * len(batch) / n
            model.elbo_trace.append(-total / n)
            bar.update(1)
            if callback is not None:
                callback(epoch, total / n)
