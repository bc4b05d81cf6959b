"""``TimeAxis``: the map between coordinate values and the float axis the models see."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.data import TIME_UNITS, TimeAxis
from workbench.errors import CoordinateError, DTypeError

ORIGIN = np.datetime64("2000-01-01T00:00:00", "ns")
# float64 holds whole nanoseconds exactly below 2**53 ns (~104 days); with one rounding in each
# direction the round trip is exact for offsets below 2**51 ns (~26 days) in every unit.
EXACT_SPAN_NS = 2**51


def datetimes(offsets_ns) -> np.ndarray:
    return ORIGIN + np.asarray(offsets_ns, dtype=np.int64).astype("timedelta64[ns]")


@pytest.mark.parametrize("unit", sorted(TIME_UNITS))
def test_datetime_round_trip_exact_at_ns_resolution(unit):
    rng = np.random.default_rng(42)
    offsets = np.concatenate([[0, 1, 999, 10**9 + 1], rng.integers(0, EXACT_SPAN_NS, 2000)])
    t = datetimes(offsets)
    axis = TimeAxis.infer(t, dim="time", unit=unit)
    x = axis.to_float(t, dim="time")
    assert x.dtype == np.float64
    back = axis.from_float(x)
    assert back.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(back, t)


@pytest.mark.parametrize("unit", ["ns", "s", "h", "D", "Y"])
def test_datetime_round_trip_before_the_origin(unit):
    axis = TimeAxis.infer(datetimes([0, 10**12]), dim="time", unit=unit)
    t = datetimes([-(10**15) - 7, -1, -(10**9)])  # e.g. `at=` positions before the data
    x = axis.to_float(t, dim="time")
    assert (x < 0).all()
    np.testing.assert_array_equal(axis.from_float(x), t)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    offset=st.integers(0, EXACT_SPAN_NS),
    unit=st.sampled_from(sorted(TIME_UNITS)),
)
def test_datetime_round_trip_property(offset, unit):
    t = datetimes([0, offset])
    axis = TimeAxis.infer(t, dim="time", unit=unit)
    np.testing.assert_array_equal(axis.from_float(axis.to_float(t, dim="time")), t)


@pytest.mark.parametrize("unit", sorted(TIME_UNITS))
def test_whole_units_map_to_whole_numbers(unit):
    k = np.array([0, 1, 2, 7, 60, 200])  # 200 Julian years still fit int64 ns
    per_unit_ns = round(TIME_UNITS[unit] * 1e9)
    t = datetimes(k * per_unit_ns)
    axis = TimeAxis.infer(t, dim="time", unit=unit)
    assert axis.to_float(t, dim="time").tolist() == k.astype(float).tolist()


def test_datetime_origin_is_earliest_and_iso():
    t = np.array(["2001-06-01T12:00", "2001-05-31"], dtype="datetime64[s]")  # not ns, not sorted
    axis = TimeAxis.infer(t, dim="time", unit="D")
    assert axis.origin == "2001-05-31T00:00:00.000000000"
    assert axis.to_float(t, dim="time").tolist() == [1.5, 0.0]
    assert axis.from_float(np.array([1.5]))[0] == np.datetime64("2001-06-01T12:00", "ns")


@pytest.mark.parametrize(
    "values",
    [
        np.array([0.0, 0.5, -3.25, 1e300]),
        np.array([3, 1, 2], dtype=np.int32),
        np.array([1, 2], dtype=np.uint16),
        np.array([0.5, 1.5], dtype=np.float32),
    ],
    ids=["float64", "int32", "uint16", "float32"],
)
def test_numeric_axis_is_identity(values):
    axis = TimeAxis.infer(values, dim="x")
    assert axis == TimeAxis(kind="numeric")
    assert not axis.is_datetime
    x = axis.to_float(values, dim="x")
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, values.astype(np.float64))
    np.testing.assert_array_equal(axis.from_float(x), x)


def test_numeric_axis_rejects_non_finite():
    axis = TimeAxis(kind="numeric")
    with pytest.raises(CoordinateError, match=r"finite coordinate values for dim 'x', got 2 non"):
        axis.to_float(np.array([0.0, np.nan, np.inf]), dim="x")


def test_kind_mismatch_datetimes_on_numeric_axis_names_dim():
    axis = TimeAxis(kind="numeric")
    with pytest.raises(
        DTypeError, match=r"expected numeric coordinates for dim 'date'.*datetime64"
    ):
        axis.to_float(datetimes([0, 1]), dim="date")


def test_kind_mismatch_numbers_on_datetime_axis_names_dim():
    axis = TimeAxis.infer(datetimes([0]), dim="date")
    with pytest.raises(
        DTypeError, match=r"expected datetime64 coordinates for dim 'date'.*float64"
    ):
        axis.to_float(np.array([0.0, 1.0]), dim="date")


def test_non_numeric_values_on_numeric_axis_names_dim():
    axis = TimeAxis(kind="numeric")
    with pytest.raises(DTypeError, match=r"numeric coordinate for dim 'x', got dtype <U1"):
        axis.to_float(np.array(["a", "b"]), dim="x")


def test_infer_rejects_strings_and_objects():
    with pytest.raises(DTypeError, match=r"numeric or datetime64 coordinate for dim 'site'"):
        TimeAxis.infer(np.array(["a"]), dim="site")
    with pytest.raises(DTypeError, match=r"dim 'site', got dtype object"):
        TimeAxis.infer(np.array([1.0, None], dtype=object), dim="site")


def test_infer_rejects_unknown_unit_and_nat():
    with pytest.raises(CoordinateError, match=r"time_unit in .*got 'month' for dim 'time'"):
        TimeAxis.infer(datetimes([0]), dim="time", unit="month")
    with pytest.raises(CoordinateError, match=r"finite datetimes in coordinate 'time'"):
        TimeAxis.infer(np.array(["NaT"], dtype="datetime64[ns]"), dim="time")


def test_to_attrs_numeric():
    assert TimeAxis(kind="numeric").to_attrs() == {"workbench_axis": "numeric"}


def test_to_attrs_datetime_rebuilds_the_axis():
    t = np.array(["2010-03-04T05:06:07.000000008"], dtype="datetime64[ns]")
    axis = TimeAxis.infer(t, dim="time", unit="h")
    attrs = axis.to_attrs()
    assert attrs == {
        "workbench_axis": "datetime",
        "workbench_unit": "h",
        "workbench_origin": "2010-03-04T05:06:07.000000008",
    }
    assert all(isinstance(v, str) for v in attrs.values())  # netCDF-serialisable
    rebuilt = TimeAxis(
        kind="datetime", unit=attrs["workbench_unit"], origin=attrs["workbench_origin"]
    )
    assert rebuilt == axis
    assert rebuilt.to_float(t, dim="time").tolist() == [0.0]
