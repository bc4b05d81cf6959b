"""The SVI loop of the GP-VAEs: minibatches of trials, modality dropout, a decaying rate."""

from __future__ import annotations

import warnings
from typing import Any

import pyro
import torch

from workbench.data.multimodal import TrialData
from workbench.progress import progress_bar

__all__ = ["check_schedule", "train_svi"]


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
    :meth:`workbench.models.MultimodalGPVAE.fit`), appending to ``model.elbo_trace``."""
    check_schedule(lr, final_lr, modality_dropout)
    arrays, n_bins, n = prepared.modalities, len(prepared.time), len(prepared.trials)
    decay = (final_lr / lr) ** (1 / max(1, epochs * -(-n // batch_size)))  # per step
    svi = pyro.infer.SVI(
        model._model,
        model._guide,
        pyro.optim.ClippedAdam({"lr": lr, "lrd": decay, "clip_norm": 10.0}),
        pyro.infer.TraceMeanField_ELBO(),
    )
    start = model.seed + len(model.elbo_trace)
    gen = torch.Generator().manual_seed(start)
    with (
        torch.random.fork_rng(devices=[]),
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
                total += svi.step(sub, n, n_bins, True, encode) * len(batch) / n
            model.elbo_trace.append(-total / n)
            bar.update(1)
            if callback is not None:
                callback(epoch, total / n)
