"""Helpers shared by the reliability tests (imported as ``edge_checks``: pytest puts this folder on
``sys.path``): running and checking calls at the xarray edge, drawing defects, and loading the
golden-file builders."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import pytest
import xarray as xr
from hypothesis import strategies as st

from workbench.errors import CoordinateError, DTypeError, WorkbenchError, WorkbenchWarning

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "saved_models"


def import_golden() -> ModuleType:
    """``tests/fixtures/saved_models/make_golden.py`` (the golden-file builders), freshly loaded."""
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- labelled results or named errors (the xarray edge) -------------------------------------------
class EdgeCase(NamedTuple):
    """An input and what a call on it must do."""

    da: xr.DataArray
    expect: type[WorkbenchError] | None  # None: the call must succeed
    names: tuple[str, ...]  # what the error message must mention
    inputs: list[str] | None = None  # a spatial model's ``inputs`` (None: found from the data)


def run(
    call: Callable[[], Any],
) -> tuple[Any, WorkbenchError | None, list[warnings.WarningMessage]]:
    """Call; return (result, workbench error or None, warnings). Other exceptions propagate."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return call(), None, caught
        except WorkbenchError as err:
            return None, err, caught


def check_error(err: WorkbenchError | None, case: EdgeCase) -> None:
    assert isinstance(err, case.expect), f"expected {case.expect.__name__}, got {err!r}"
    for name in case.names:
        assert name in str(err), f"{name!r} not named in: {err}"


def run_case(call: Callable[[], Any], case: EdgeCase) -> Any:
    """Call for ``case``: None after checking the named error it must raise, else the result of a
    call that must succeed (with a WorkbenchWarning where ``case.da`` is float32)."""
    out, err, caught = run(call)
    if case.expect is not None:
        check_error(err, case)
        return None
    assert err is None, f"valid input raised {err!r}"
    if case.da.dtype == np.float32:
        assert any(issubclass(w.category, WorkbenchWarning) for w in caught)
    return out


def check_moments(
    ds: xr.Dataset,
    dims: tuple[str, ...],
    units: str | None,
    shape: tuple[int, ...] | None = None,
) -> None:
    """Mean, variance, lower and upper along ``dims`` (and of ``shape`` when given), every value
    finite, in ``units`` (squared for the variance; None: not checked), variance >= 0 and
    lower <= upper."""
    assert isinstance(ds, xr.Dataset)
    assert set(ds.data_vars) == {"mean", "variance", "lower", "upper"}
    for var in ds.data_vars.values():
        assert var.dims == dims and (shape is None or var.shape == shape)
        assert np.isfinite(var.values).all(), f"non-finite {var.name}"
        if units is not None:
            assert var.attrs["units"] == (f"({units})^2" if var.name == "variance" else units)
    assert (ds["variance"].values >= 0).all()
    assert (ds["lower"].values <= ds["upper"].values).all()


def named(da: xr.DataArray) -> str:
    """How an error message names ``da``: its name quoted, or "DataArray"."""
    return f"{da.name!r}" if da.name is not None else "DataArray"


def set_one_observed(draw: Callable[..., Any], da: xr.DataArray, value: float) -> xr.DataArray:
    """``da`` with one observed (finite) value, drawn with ``draw``, set to ``value``."""
    values = da.values.copy()
    observed = np.flatnonzero(np.isfinite(values))
    values.flat[observed[draw(st.integers(0, len(observed) - 1))]] = value
    return da.copy(data=values)


# -- generated inputs with at most one defect ----------------------------------------------------
@dataclass
class DefectCase:
    """A generated input and what the edge must do with it."""

    da: xr.DataArray
    defect: str | None = None
    float32: bool = False

    @property
    def label(self) -> str:
        return f"variable {self.da.name!r}" if self.da.name is not None else "the DataArray"


#: defect -> (error it must raise, what its message must name: a dim, or "label" for the case's
#: ``label``, the variable or modality)
Defects = dict[str, tuple[type[WorkbenchError], str]]
TIME_DEFECTS: Defects = {
    "unsorted": (CoordinateError, "'time'"),
    "duplicate": (CoordinateError, "'time'"),
    "nan_coord": (CoordinateError, "'time'"),
}
DTYPE_DEFECTS: Defects = {
    "complex": (DTypeError, "label"),
    "string": (DTypeError, "label"),
    "object": (DTypeError, "label"),
    "timedelta": (DTypeError, "label"),
}


def time_kind(draw: Callable[..., Any], breaks_time: bool) -> str:
    """A drawn kind of time coordinate: "float", "datetime", "int" or "none"; "float" for "int"
    and "none" where a defect (``breaks_time``) needs coordinates to break."""
    kind = draw(st.sampled_from(["float", "datetime", "int", "none"]))
    return "float" if breaks_time and kind in ("int", "none") else kind


def break_time(draw: Callable[..., Any], time: np.ndarray, defect: str) -> np.ndarray:
    """A copy of ``time`` with one defect at a drawn index ``i >= 1``: "unsorted" (``i - 1`` and
    ``i`` swapped), "duplicate" (``i`` repeats ``i - 1``), "uneven" (one gap twice as long) or
    "nan_coord" (``i`` is NaN or NaT)."""
    time = time.copy()
    i = draw(st.integers(1, len(time) - 1))
    if defect == "unsorted":
        time[[i - 1, i]] = time[[i, i - 1]]
    elif defect == "duplicate":
        time[i] = time[i - 1]
    elif defect == "uneven":
        time[i:] = time[i:] + (time[1] - time[0])
    else:
        time[i] = np.datetime64("NaT") if time.dtype.kind == "M" else np.nan
    return time


def with_bad_dtype(da: xr.DataArray, defect: str, unit: str = "s") -> xr.DataArray:
    """``da`` with values of a dtype the edge refuses, as ``defect`` says: "complex", "string",
    "object" or "timedelta" (zeros in ``unit``)."""
    if defect == "timedelta":
        return da.copy(data=np.zeros(da.shape, dtype=f"timedelta64[{unit}]"))
    dtype = {"complex": np.complex128, "string": str, "object": object}[defect]
    return da.copy(data=da.values.astype(dtype))


def assert_same_coords(
    out: xr.Dataset | xr.DataArray, da: xr.DataArray, dims: Iterable[Hashable]
) -> None:
    """``out`` has ``da``'s sizes along ``dims``, and its coordinates where ``da`` has some."""
    for dim in dims:
        assert out.sizes[dim] == da.sizes[dim], dim
        if dim in da.coords:
            np.testing.assert_array_equal(out[dim].values, da[dim].values)


def check_defect(
    case: Any, call: Callable[[], Any], table: Defects, *also: str, quiet: bool = False
) -> None:
    """``call()`` raises the error ``table`` lists for ``case.defect``, with a message that starts
    "expected " and names what the table says (a dim, or "label": ``case.label``) and each of
    ``also``; ``quiet``: WorkbenchWarnings on the way are ignored."""
    error, needle = table[case.defect]
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", WorkbenchWarning)
        with pytest.raises(error) as info:
            call()
    message = str(info.value)
    assert message.startswith("expected "), message
    for name in (case.label if needle == "label" else needle, *also):
        assert name in message, message


def run_benign(case: DefectCase, call: Callable[[], Any]) -> Any:
    """Run a benign call: float32 input warns (WorkbenchWarning); nothing else may go wrong."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    kinds = {w.category for w in caught}
    assert not case.float32 or WorkbenchWarning in kinds, [str(w.message) for w in caught]
    return out
