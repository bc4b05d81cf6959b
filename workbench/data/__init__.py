"""The input edge: labelled arrays in, validated tensors out."""

from __future__ import annotations

from workbench.data.at import resolve_at as resolve_at
from workbench.data.from_dataarray import SUPPORTS as SUPPORTS
from workbench.data.from_dataarray import from_dataarray as from_dataarray
from workbench.data.observations import Observations as Observations
from workbench.data.time_axis import TIME_UNITS as TIME_UNITS
from workbench.data.time_axis import TimeAxis as TimeAxis

__all__ = ["SUPPORTS", "TIME_UNITS", "Observations", "TimeAxis", "from_dataarray", "resolve_at"]
