"""Long-form task data (one row per observation) to the ``DataArray(task, time)`` form."""

from __future__ import annotations

import numpy as np
import xarray as xr

from workbench.errors import CoordinateError, DimensionError

__all__ = ["tasks_from_long"]


def tasks_from_long(ds: xr.Dataset, value: str | None = None, task: str = "task") -> xr.DataArray:
    """Pivot a long-form Dataset (variables ``task``, ``time`` and a value along one row dim)
    into ``DataArray(task, time)`` with NaN where a task has no observation.

    Raises
    ------
    DimensionError
        If the variables do not share one row dim, or the value variable is ambiguous.
    CoordinateError
        If a (task, time) pair occurs more than once (the model would need to average or
        drop it silently).
    """
    for name in (task, "time"):
        if name not in ds.variables:
            raise DimensionError(
                f"expected a {name!r} variable in the long-form data, got {list(ds.variables)}"
            )
    if value is None:
        candidates = [v for v in ds.data_vars if v not in (task, "time")]
        if len(candidates) != 1:
            raise DimensionError(f"expected one value variable (or value=...), got {candidates}")
        value = candidates[0]
    dims = {ds[name].dims for name in (task, "time", value)}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise DimensionError(
            f"expected {task!r}, 'time' and {value!r} along one row dim, got {dims}"
        )
    frame = ds[[task, "time", value]].to_dataframe()
    duplicated = frame.duplicated(subset=[task, "time"])
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise CoordinateError(
            f"expected one observation per ({task}, time), got {int(duplicated.sum())} "
            f"duplicate(s), e.g. {task}={first[task]!r}, time={first['time']!r}"
        )
    table = frame.pivot(index=task, columns="time", values=value)
    out = xr.DataArray(
        table.values.astype(np.float64),
        dims=(task, "time"),
        coords={task: table.index.values, "time": table.columns.values},
        name=value,
        attrs=dict(ds[value].attrs),
    )
    out["time"].attrs = dict(ds["time"].attrs)
    return out
