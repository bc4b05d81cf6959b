"""Ragged trials packed end to end: one state-space pass, no padding bins.

Trials share one time coordinate in the input ``DataArray``; a trial's span runs from its first
to its last bin with any observed unit (NaN tails are "trial over", NaN inside the span is
"missing bin"). The spans are concatenated into one sequence whose first bin of each trial
restarts the prior (see ``starts`` in :meth:`MarkovGP._state_space`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from workbench.errors import EmptyDataError

__all__ = ["PackedTrials", "pack_trials"]


class PackedTrials(NamedTuple):
    x: torch.Tensor  # shape: (L,) bin times, restarting per trial
    starts: torch.Tensor  # shape: (L,) bool, first bin of each trial
    trial: torch.Tensor  # shape: (L,) trial index of each packed bin
    bin: torch.Tensor  # shape: (L,) index on the shared time grid
    n_trials: int
    n_bins: int  # length of the shared grid

    @property
    def lengths(self) -> torch.Tensor:
        """Bins per trial, shape (R,)."""
        return torch.bincount(self.trial, minlength=self.n_trials)

    def pack(self, values: torch.Tensor) -> torch.Tensor:
        """(R, C, T) on the shared grid -> (1, C, L) packed."""
        return values[self.trial, :, self.bin].T[None]

    def unpack(self, packed: torch.Tensor, fill: float = float("nan")) -> torch.Tensor:
        """(1, C, L) packed -> (R, C, T); bins outside a trial's span get ``fill``."""
        C = packed.shape[1]
        out = packed.new_full((self.n_trials, C, self.n_bins), fill)
        out[self.trial, :, self.bin] = packed[0].T
        return out

    def segments(self) -> list[slice]:
        """Slices of the packed axis, one per trial."""
        ends = torch.cumsum(self.lengths, 0).tolist()
        return [slice(end - n, end) for end, n in zip(ends, self.lengths.tolist(), strict=True)]


def pack_trials(x: torch.Tensor, mask: torch.Tensor, trial_names: list) -> PackedTrials:
    """Spans of observed bins per trial from ``mask`` (R, N, T) on the shared grid ``x`` (T,)."""
    seen = mask.any(1)  # (R, T)
    R, T = seen.shape
    empty = [str(trial_names[r]) for r in range(R) if not bool(seen[r].any())]
    if empty:
        raise EmptyDataError(f"expected observed bins in every trial, got none in trial(s) {empty}")
    grid = torch.arange(T, device=mask.device)
    first = torch.where(seen, grid, T).amin(1)
    last = torch.where(seen, grid, -1).amax(1)
    inside = (grid >= first[:, None]) & (grid <= last[:, None])
    trial, bins = inside.nonzero(as_tuple=True)  # row-major: trial by trial, in time order
    starts = bins == first[trial]
    return PackedTrials(x[bins], starts, trial, bins, R, T)
