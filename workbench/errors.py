"""Named exceptions and warnings raised at the edges of workbench.

Every error raised on bad user input is a subclass of :class:`WorkbenchError` and of the builtin
``ValueError`` or ``TypeError`` it specialises, so ``except ValueError`` keeps working. Messages
follow the pattern "expected …, got …" and name the offending dim or variable.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "CoordinateError",
    "DTypeError",
    "DatasetNotFoundError",
    "DimensionError",
    "EmptyDataError",
    "FitDivergedError",
    "FitManyError",
    "ModelFileError",
    "ShapeMismatchError",
    "ValueRangeError",
    "WorkbenchError",
    "WorkbenchWarning",
    "check_positive",
]


class WorkbenchError(Exception):
    """Base class of every error that workbench raises on purpose."""


class DimensionError(WorkbenchError, ValueError):
    """A required dimension is missing, duplicated or unexpected."""


class DTypeError(WorkbenchError, TypeError):
    """Values or coordinates have a dtype the model cannot use (e.g. strings, objects)."""


class CoordinateError(WorkbenchError, ValueError):
    """A coordinate is non-finite, unsorted or has duplicates where a model needs order."""


class EmptyDataError(WorkbenchError, ValueError):
    """A series has no observed (non-NaN) value, or the input is empty."""


class ValueRangeError(WorkbenchError, ValueError):
    """Values fall outside the support of the likelihood (e.g. negative counts)."""


class ShapeMismatchError(WorkbenchError, ValueError):
    """Two inputs that must agree in dims or sizes do not (e.g. data and ``at``)."""


class DatasetNotFoundError(WorkbenchError, ValueError):
    """``wb.load_dataset`` was given a name that is not shipped."""


class ModelFileError(WorkbenchError, ValueError):
    """A saved model file is truncated, corrupted, foreign or from an unknown format version."""


class FitDivergedError(WorkbenchError, RuntimeError):
    """An optimisation produced non-finite values; the message says what to try."""


class FitManyError(WorkbenchError, RuntimeError):
    """Every item of :func:`~workbench.scale.fit_many` failed; the message lists the errors."""


class WorkbenchWarning(UserWarning):
    """Warnings about data conventions (float32 input, dropped attrs, fallbacks)."""


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` as a float; :class:`ValueRangeError` unless it is finite and > 0 (>= 0 with
    ``allow_zero``), e.g. ``expected a finite noise > 0, got -1.0``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isfinite(number) and (number > 0 or (allow_zero and number == 0)):
        return number
    bound = ">= 0" if allow_zero else "> 0"
    raise ValueRangeError(f"expected a finite {name} {bound}, got {value!r}")
