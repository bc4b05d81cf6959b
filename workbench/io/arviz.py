"""Bridge sample-based outputs to ArviZ (0.23 ``InferenceData`` or 1.x ``DataTree``)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "GROUPS",
    "arviz_major",
    "check_num_samples",
    "import_arviz",
    "observed_point_coords",
    "pointwise_layout",
    "samples_to_datatree",
    "samples_to_inference_data",
    "to_arviz",
]

#: ArviZ groups we write; groups holding data carry no (chain, draw) dims.
GROUPS = (
    "posterior",
    "posterior_predictive",
    "predictions",
    "log_likelihood",
    "sample_stats",
    "observed_data",
    "constant_data",
)
_SAMPLE_DIMS = ("chain", "draw")


def samples_to_datatree(
    groups: Mapping[str, Mapping[str, Any]],
    *,
    dims: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
    group_coords: Mapping[str, Mapping[str, Any]] | None = None,
    var_attrs: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    """Build an ArviZ-schema ``DataTree`` from arrays.

    Parameters
    ----------
    groups : mapping
        ``{group: {variable: array}}``. Arrays in sample groups have leading
        ``(chain, draw)`` axes; ``observed_data``/``constant_data`` arrays do not. Values may
        also be ``xr.DataArray`` (used as they are, plus sample dims if missing).
    dims : mapping, optional
        ``{variable: [dim, ...]}`` names of the axes after ``(chain, draw)``.
    coords : mapping, optional
        Coordinate values for named dims.
    group_coords : mapping, optional
        ``{group: {name: coord}}`` further coordinates of one group, e.g. the data's dim
        coordinates along an ``obs`` dim (a name may be a dim in another group).
    var_attrs : mapping, optional
        ``{group: {variable: attrs}}`` attributes of single variables.
    attrs : mapping, optional
        Provenance attributes set on every group.

    Returns
    -------
    xr.DataTree
        Children named after the groups, with ``chain``/``draw`` coordinates.
    """
    unknown = set(groups) | set(group_coords or {}) | set(var_attrs or {})
    unknown -= set(GROUPS)
    if unknown:
        raise ValueError(f"expected groups among {GROUPS}, got {sorted(unknown)}")
    dims = dims or {}
    coords = dict(coords or {})
    children = {}
    for group, variables in groups.items():
        if not variables:
            continue
        sampled = group not in ("observed_data", "constant_data")
        data_vars = {
            name: _as_dataarray(value, name, dims.get(name), sampled, coords)
            for name, value in variables.items()
        }
        if sampled:
            _check_sample_sizes(group, data_vars)
        ds = xr.Dataset(data_vars, attrs=dict(attrs or {}))
        ds = ds.assign_coords(dict((group_coords or {}).get(group, {})))
        for name, var_attr in (var_attrs or {}).get(group, {}).items():
            ds[name].attrs = dict(var_attr)
        children[group] = xr.DataTree(ds)
    return xr.DataTree(children=children)


def samples_to_inference_data(groups: Mapping[str, Mapping[str, Any]], **kwargs: Any) -> Any:
    """Like :func:`samples_to_datatree`, returned in the installed ArviZ's container.

    ArviZ ≥ 1 works on ``xr.DataTree`` directly; ArviZ 0.x gets an ``InferenceData``. The two
    differ in their methods (``assign_coords``, ``groups``), so build everything through the
    keywords here rather than editing the result.
    """
    return to_arviz(samples_to_datatree(groups, **kwargs))


def to_arviz(tree: xr.DataTree) -> Any:
    """An ArviZ-schema ``DataTree`` in the installed ArviZ's container (itself for ArviZ ≥ 1,
    an ``InferenceData`` for 0.x)."""
    if arviz_major() >= 1:
        return tree
    return import_arviz().InferenceData.from_datatree(tree)


def import_arviz() -> Any:
    """The ``arviz`` module (imported on first use: it is slow to import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz 0.23 warns about its refactor
        import arviz as az
    return az


def arviz_major() -> int:
    """Major version of the installed ArviZ (0 for the 0.23 line, 1 for the DataTree line)."""
    return int(import_arviz().__version__.split(".")[0])


def _check_sample_sizes(group: str, data_vars: Mapping[str, xr.DataArray]) -> None:
    # xr.Dataset would outer-join differing chain/draw indexes and pad with NaN silently
    sizes = {name: tuple(da.sizes[d] for d in _SAMPLE_DIMS) for name, da in data_vars.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"expected the same (chain, draw) sizes for every variable in group {group!r}, "
            f"got {sizes}"
        )


def _as_dataarray(
    value: Any,
    name: str,
    var_dims: Sequence[str] | None,
    sampled: bool,
    coords: Mapping[str, Any],
) -> xr.DataArray:
    if isinstance(value, xr.DataArray):
        da = value.rename(name)
    else:
        array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        lead = _SAMPLE_DIMS if sampled else ()
        n_rest = array.ndim - len(lead)
        if n_rest < 0:
            raise ValueError(
                f"expected variable {name!r} to have leading (chain, draw) axes, got shape "
                f"{array.shape}"
            )
        rest = (
            list(var_dims) if var_dims is not None else [f"{name}_dim_{i}" for i in range(n_rest)]
        )
        if len(rest) != n_rest:
            raise ValueError(
                f"expected {n_rest} dim names for variable {name!r} (shape {array.shape}), "
                f"got {rest}"
            )
        all_dims = (*lead, *rest)
        var_coords = {d: coords[d] for d in all_dims if d in coords}
        da = xr.DataArray(array, dims=all_dims, coords=var_coords, name=name)
    if sampled:
        for d in reversed(_SAMPLE_DIMS):
            if d not in da.dims:
                da = da.expand_dims(d)
        da = da.assign_coords({d: np.arange(da.sizes[d]) for d in _SAMPLE_DIMS})
    return da


def observed_point_coords(da: xr.DataArray, task_dim: str, dim: str = "time") -> dict[str, Any]:
    """Coordinates of one ``obs`` dim over the observed (non-NaN) values of a
    ``DataArray(task, time)``, in task-major order: ``obs`` plus ``task``/``time`` along it."""
    values = da.transpose(task_dim, dim).values
    task, point = np.nonzero(np.isfinite(values))
    return {
        "obs": np.arange(task.size),
        task_dim: ("obs", da[task_dim].values[task]),
        dim: ("obs", da[dim].values[point]),
    }


def pointwise_layout(observed: xr.DataArray, mask: np.ndarray) -> tuple[list[str], dict]:
    """Dims and coords for per-value variables (observed data, log-likelihoods, replicates).

    ``mask`` (shape of ``observed``) marks observed values. With none missing the data keep
    their own dims and coords; otherwise the observed values go on one ``obs`` dim that
    carries the data's dim coordinates, since ArviZ functions need finite values.
    """
    if mask.all():
        coords = {name: (c.dims, c.values) for name, c in observed.coords.items()}
        return list(observed.dims), coords
    where = np.nonzero(mask)
    coords: dict[str, Any] = {"obs": np.arange(int(mask.sum()))}
    for d, index in zip(observed.dims, where, strict=True):
        if d in observed.coords:
            coords[str(d)] = ("obs", observed[d].values[index])
    return ["obs"], coords


def check_num_samples(num_samples: int) -> None:
    """Refuse a draw count below one (torch would fail with an unhelpful message)."""
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"expected num_samples >= 1, got {num_samples}")
