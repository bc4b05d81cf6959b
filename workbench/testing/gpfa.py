"""Elephant's EM-GPFA (Yu et al. 2009) on binned counts, the peer of the latent models.

Elephant takes ``neo.SpikeTrain`` s only, so counts are turned into spike times at the bin
centres (checked to bin back to the same counts). Used by ``bench_latent_peers.py``,
``bench_gpvae.py`` and the notebooks.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

__all__ = ["elephant_gpfa", "spike_trains"]


def spike_trains(counts: np.ndarray, dt: float) -> list:
    """Counts (trial, time, unit) as lists (trial) of ``neo.SpikeTrain`` (unit)."""
    import neo
    import quantities as pq
    from elephant.gpfa.gpfa_util import get_seqs

    T = counts.shape[1]
    centres = (np.arange(T) + 0.5) * dt
    trains = [
        [neo.SpikeTrain(np.repeat(centres, c), t_start=0.0, t_stop=T * dt, units="s") for c in u]
        for u in counts.astype(int).transpose(0, 2, 1)
    ]
    binned = get_seqs(trains, dt * pq.s, use_sqrt=False)["y"]
    if not all(np.array_equal(b, c.T) for b, c in zip(binned, counts, strict=True)):
        raise AssertionError("Elephant's binned counts differ from the given counts")
    return trains


def elephant_gpfa(trains, dt: float, n_latents: int, em_iters: int = 500, transform=None):
    """Fit on ``trains`` and return the latents (trial, time, latent) of ``transform``
    (default the training trials) and the EM iterations run."""
    import quantities as pq
    from elephant.gpfa import GPFA

    gpfa = GPFA(bin_size=dt * pq.s, x_dim=n_latents, em_max_iters=em_iters)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpfa.fit(trains)
        target = trains if transform is None else transform
        latents = gpfa.transform(target, returned_data=["latent_variable"])
    return np.stack(list(latents)).transpose(0, 2, 1), len(gpfa.fit_info["log_likelihoods"])
