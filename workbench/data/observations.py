"""The frozen, validated in-memory form of a labelled input."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.data.time_axis import TimeAxis

__all__ = ["Observations"]


@dataclass(frozen=True, eq=False)
class Observations:
    """Tensors a model consumes, plus what is needed to label its outputs.

    Attributes
    ----------
    x : Tensor, shape (T,)
        Float64 positions along ``dim`` (datetimes mapped through ``axis``).
    y : Tensor, shape (*batch, T)
        Float64 values with unobserved entries set to zero.
    mask : Tensor, shape (*batch, T)
        ``True`` where a value was observed (not NaN).
    dim : str
        The modelled dimension (e.g. ``"time"``).
    batch_dims : tuple of str
        The other dims of the input, in the order of the leading axes of ``y``.
    axis : TimeAxis
        Map between coordinate values of ``dim`` and ``x``.
    template : xr.DataArray
        The input with its values dropped (dims, coords, name and attrs), used to label outputs.
    """

    x: torch.Tensor  # shape: (T,)
    y: torch.Tensor  # shape: (*batch, T)
    mask: torch.Tensor  # shape: (*batch, T)
    dim: str
    batch_dims: tuple[str, ...]
    axis: TimeAxis
    template: xr.DataArray = field(repr=False)

    @property
    def name(self) -> str | None:
        """Name of the input variable (``None`` if unnamed)."""
        return self.template.name

    @property
    def attrs(self) -> dict[str, Any]:
        """The input's attributes (CF ``long_name``, ``units``, …)."""
        return dict(self.template.attrs)

    @property
    def batch_shape(self) -> torch.Size:
        return self.y.shape[:-1]

    @property
    def n_observed(self) -> int:
        return int(self.mask.sum())

    def observed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of the observed entries of a single series (no batch dims)."""
        if self.y.ndim != 1:
            raise ValueError("observed() needs a single series; index the batch dims first")
        return self.x[self.mask], self.y[self.mask]

    @property
    def n_series(self) -> int:
        return int(np.prod(tuple(self.batch_shape), dtype=np.int64))

    def series(self, index: int) -> Observations:
        """The ``index``-th series (C order over the batch dims) as its own Observations."""
        T = self.x.shape[0]
        where = np.unravel_index(index, tuple(self.batch_shape))
        return replace(
            self,
            y=self.y.reshape(-1, T)[index],
            mask=self.mask.reshape(-1, T)[index],
            batch_dims=(),
            template=self.template.isel(dict(zip(self.batch_dims, where, strict=True))),
        )

    def to(self, device: torch.device | str) -> Observations:
        """The same observations with ``x``, ``y`` and ``mask`` on ``device``.

        Built from xarray on the CPU; models move them to their own device at their entry
        points (a no-op, without copies, where they already are).
        """
        return replace(self, x=self.x.to(device), y=self.y.to(device), mask=self.mask.to(device))

    def coords_of(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Coordinate values (numeric or datetime64) for float positions ``x``."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        return self.axis.from_float(x)
