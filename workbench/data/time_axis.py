"""Map a coordinate (numeric or ``datetime64``) to a float axis and back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import CoordinateError, DTypeError

__all__ = ["TIME_UNITS", "TimeAxis"]

#: Length of each supported datetime unit in seconds ("Y" is the Julian year of 365.25 days).
TIME_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "D": 86400.0,
    "W": 7 * 86400.0,
    "Y": 365.25 * 86400.0,
}

# Exact nanoseconds per unit (all exactly representable as float64): dividing by these keeps whole
# units exact (e.g. 60 days -> 60.0, not 60.00000000000001) and round trips at ns resolution.
_NS_PER_UNIT: dict[str, float] = {u: float(round(s * 1e9)) for u, s in TIME_UNITS.items()}


def _is_real_number(dtype: np.dtype) -> bool:
    # numpy counts timedelta64 as an integer type; its unit would be silently dropped
    return (
        np.issubdtype(dtype, np.number)
        and not np.issubdtype(dtype, np.complexfloating)
        and not np.issubdtype(dtype, np.timedelta64)
    )


@dataclass(frozen=True)
class TimeAxis:
    """How coordinate values along one dim map to the float axis the models see.

    For a numeric coordinate the map is the identity. For ``datetime64`` coordinates
    :math:`x = (t - t_0) / u`, with origin :math:`t_0` (the first coordinate) and unit :math:`u`
    one of :data:`TIME_UNITS`.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array(["2000-01-01", "2000-01-08"], dtype="datetime64[ns]")
    >>> axis = TimeAxis.infer(t, dim="time", unit="D")
    >>> axis.to_float(t, dim="time").tolist()
    [0.0, 7.0]
    >>> axis.from_float(np.array([3.5]))[0]
    np.datetime64('2000-01-04T12:00:00.000000000')
    """

    kind: str  # "numeric" or "datetime"
    unit: str | None = None
    origin: str | None = None  # ISO string of the datetime origin (serialisable)

    @classmethod
    def infer(cls, values: np.ndarray, dim: str, unit: str = "D") -> TimeAxis:
        """Build the axis for coordinate ``values`` of ``dim``."""
        values = np.asarray(values)
        if np.issubdtype(values.dtype, np.datetime64):
            if unit not in TIME_UNITS:
                raise CoordinateError(
                    f"expected time_unit in {sorted(TIME_UNITS)}, got {unit!r} for dim {dim!r}"
                )
            if values.size == 0 or np.isnat(values).any():
                raise CoordinateError(
                    f"expected finite datetimes in coordinate {dim!r}, got NaT values"
                )
            origin = np.datetime_as_string(values.min().astype("datetime64[ns]"), unit="ns")
            return cls(kind="datetime", unit=unit, origin=origin)
        if _is_real_number(values.dtype):
            return cls(kind="numeric")
        raise DTypeError(
            f"expected a numeric or datetime64 coordinate for dim {dim!r}, got dtype {values.dtype}"
        )

    @property
    def is_datetime(self) -> bool:
        return self.kind == "datetime"

    def to_float(self, values: np.ndarray, dim: str) -> np.ndarray:
        """Convert coordinate values to float64, checking they are finite and of the right kind."""
        values = np.asarray(values)
        is_dt = np.issubdtype(values.dtype, np.datetime64)
        if is_dt != self.is_datetime:
            want = "datetime64" if self.is_datetime else "numeric"
            raise DTypeError(
                f"expected {want} coordinates for dim {dim!r} (as in the data), "
                f"got dtype {values.dtype}"
            )
        if is_dt:
            if np.isnat(values).any():
                raise CoordinateError(f"expected finite datetimes in {dim!r}, got NaT values")
            origin = np.datetime64(self.origin, "ns")
            delta = (values.astype("datetime64[ns]") - origin).astype(np.int64)
            out = delta.astype(np.float64) / _NS_PER_UNIT[self.unit]
        else:
            if not _is_real_number(values.dtype):
                raise DTypeError(
                    f"expected a numeric coordinate for dim {dim!r}, got dtype {values.dtype}"
                )
            out = values.astype(np.float64)
        if not np.isfinite(out).all():
            raise CoordinateError(
                f"expected finite coordinate values for dim {dim!r}, got "
                f"{int((~np.isfinite(out)).sum())} non-finite value(s)"
            )
        return out

    def from_float(self, x: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_float` (rounded to whole nanoseconds for datetimes)."""
        x = np.asarray(x, dtype=np.float64)
        if not self.is_datetime:
            return x
        ns = np.rint(x * _NS_PER_UNIT[self.unit]).astype(np.int64)
        return np.datetime64(self.origin, "ns") + ns.astype("timedelta64[ns]")

    def to_config(self) -> dict[str, str | None]:
        """Constructor arguments (JSON-able), for saved models: ``TimeAxis(**config)``."""
        return {"kind": self.kind, "unit": self.unit, "origin": self.origin}

    def to_attrs(self) -> dict[str, str]:
        """Attributes recording the map (serialisable to netCDF)."""
        if not self.is_datetime:
            return {"workbench_axis": "numeric"}
        return {
            "workbench_axis": "datetime",
            "workbench_unit": self.unit,
            "workbench_origin": self.origin,
        }
