"""``fit_many``: one independent model per entry of a dim, in-process or on a Dask cluster."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import xarray as xr

from workbench.errors import DimensionError, DTypeError, EmptyDataError
from workbench.scale.results import assemble
from workbench.scale.tasks import Task, run_dask, run_serial

__all__ = ["fit_many"]

#: Keyword arguments ``fit_many`` passes itself; users set them through its own arguments.
_RESERVED = {"fit": ("dim", "progress"), "posterior": ("dim",)}


def fit_many(
    make_model: Callable[[], Any] | Callable[[Any], Any],
    da: xr.DataArray,
    over: str,
    *,
    dim: str = "time",
    client: Any = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    posterior_kwargs: Mapping[str, Any] | None = None,
    on_error: Literal["record", "raise"] = "record",
    seed: int = 0,
    progress: bool | None = None,
) -> xr.Dataset:
    """Fit one independent model per entry of ``over`` and combine the results along it.

    Each item ``da.isel({over: i})`` gets a fresh model from ``make_model``, which is fitted
    with ``model.fit(item, dim=dim, progress=False, **fit_kwargs)`` and summarised by its
    posterior, log marginal likelihood and hyper-parameters. Items run in this process by
    default, or as futures on a ``dask.distributed`` cluster when ``client`` is given; the
    results are identical either way.

    Parameters
    ----------
    make_model : callable
        Returns an unfitted workbench model, e.g.
        ``lambda: wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), noise=0.1)``. If it takes one
        positional argument it is called with the item's coordinate value along ``over``
        (the position when ``over`` has no coordinate), for per-item settings. It is called
        inside the worker: data are shipped, models are not.
    da : xr.DataArray
        Data with dims ``over`` and ``dim`` (and optionally more batch dims, which each item's
        model sees as series sharing its hyper-parameters). NaN means "not observed". Dask-backed
        data are computed item by item (on the cluster when ``client`` is given).
    over : str
        The dim to split on (e.g. ``"unit"``, ``"region"``, ``"sensor"``, ``"task"``).
    dim : str
        The dim each model runs along.
    client : dask.distributed.Client, optional
        Run the items as futures on this cluster; ``None`` fits them one after another here.
    fit_kwargs, posterior_kwargs : mapping, optional
        Passed to ``model.fit`` (e.g. ``steps=20``) and ``model.posterior`` (e.g. ``at=...``).
    on_error : {"record", "raise"}
        ``"record"``: a failed item gets NaN results and its message in ``error``; the others
        are kept (if every item fails, :class:`FitManyError` is raised). ``"raise"``: the first
        failure (in ``over`` order) is raised as the original exception.
    seed : int
        Torch's RNG is seeded per item from ``seed`` and the item's position (not from the
        worker it lands on), so results do not depend on scheduling. The caller's RNG state
        is left as it was.
    progress : bool, optional
        A bar over items (``None``: unless ``WORKBENCH_PROGRESS=0``).

    Returns
    -------
    xr.Dataset
        - ``mean``, ``variance``, ``lower``, ``upper``: each item's posterior, dims in the
          order of ``da`` (``dim`` takes the ``at`` coordinates if given);
        - ``log_marginal_likelihood``: the dims of ``da`` without ``dim``, in its order;
        - ``hyperparameters``: dims (``over``, ``hyperparameter``), natural scale; the string
          coordinate ``hyperparameter`` holds the names of ``model.hyperparameters()``
          (list-valued ones flattened as ``"name[i]"``), e.g.
          ``ds.hyperparameters.sel(hyperparameter="kernel.lengthscale")``, or
          ``ds.hyperparameters.to_pandas()`` for a table;
        - ``error``: dims (``over``,), ``""`` where the item succeeded, else
          ``"ExceptionType: message"``; every numeric variable of a failed item is NaN.

        The coordinates of ``over`` (with their attrs) and of ``dim`` are kept. Attrs:
        provenance (``workbench_version``, ``created_at``), those shared by every item's
        posterior (``model``, ``kernel``, ``ci_prob``, ...), ``fit_many_over`` and
        ``n_failed``.

    Raises
    ------
    DTypeError
        ``da`` is not a DataArray.
    DimensionError
        ``over`` or ``dim`` is not a dim of ``da``, or they are the same.
    EmptyDataError
        ``over`` has length zero.
    TypeError, ValueError
        ``make_model`` is not callable or takes more than one required argument; ``client``
        is not a ``dask.distributed.Client``; ``fit_kwargs``/``posterior_kwargs`` hold a
        keyword ``fit_many`` sets itself (``dim``, ``progress``).
    FitManyError
        Every item failed (``on_error="record"``), e.g. from a misspelt ``fit_kwargs`` key.

    Notes
    -----
    Each item runs with one torch thread (restored afterwards in this process), so that
    ``workers x threads_per_worker`` bounds the cores used; start clusters with
    ``threads_per_worker=1``. A float64 fit is then bitwise reproducible across processes.
    Torch's RNG is process-global too: with several threads per worker process, models that
    draw random numbers are no longer reproducible (items reseed it under each other).
    Dask's statistical worker profiler (on by default) sampled these many small torch
    operations at about 20 % extra worker CPU in our benchmark; turn it off before starting a
    cluster with ``dask.config.set({"distributed.worker.profile.enabled": False})``.

    ``make_model`` must be importable or picklable by value on the workers: lambdas and
    functions defined in a notebook or inside another function are; module-level functions
    of a module the workers cannot import (e.g. a test file) are not, and every item fails
    with ``ModuleNotFoundError``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> import workbench as wb
    >>> from workbench.scale import fit_many
    >>> x = np.linspace(0, 10, 50)
    >>> da = xr.DataArray(
    ...     np.sin(x + np.arange(3)[:, None]), dims=("unit", "time"),
    ...     coords={"unit": ["a", "b", "c"], "time": x},
    ... )
    >>> ds = fit_many(
    ...     lambda: wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), noise=0.1),
    ...     da, over="unit", fit_kwargs={"steps": 2}, progress=False,
    ... )
    >>> ds["mean"].dims, ds["hyperparameters"].dims, ds["error"].values.tolist()
    (('unit', 'time'), ('unit', 'hyperparameter'), ['', '', ''])
    """
    task = _make_task(make_model, da, over, dim, fit_kwargs, posterior_kwargs)
    if on_error not in ("record", "raise"):
        raise ValueError(f"expected on_error in ('record', 'raise'), got {on_error!r}")
    labels = _labels(da, over)
    # each item loses every coordinate along `over`; they are put back once, at the end
    along_over = [name for name, c in da.coords.items() if over in c.dims]
    items = [da.isel({over: i}).drop_vars(along_over) for i in range(da.sizes[over])]
    # per-item seeds from the position, so the cluster reproduces the serial run
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(len(items))]
    catch = on_error == "record"
    if client is None:
        results = run_serial(items, labels, seeds, task, catch, progress)
    else:
        results = run_dask(client, items, labels, seeds, task, catch, progress)
    return assemble(da, over, dim, labels, results)


def _make_task(
    make_model: Any,
    da: Any,
    over: str,
    dim: str,
    fit_kwargs: Mapping[str, Any] | None,
    posterior_kwargs: Mapping[str, Any] | None,
) -> Task:
    if not isinstance(da, xr.DataArray):
        raise DTypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    for name, value in (("over", over), ("dim", dim)):
        if value not in da.dims:
            raise DimensionError(f"expected {name}={value!r} among the dims, got {tuple(da.dims)}")
    if over == dim:
        raise DimensionError(f"expected `over` and `dim` to differ, got {over!r} for both")
    if da.sizes[over] == 0:
        raise EmptyDataError(f"expected at least one entry along dim {over!r}, got 0")
    if not callable(make_model):
        raise TypeError(
            f"expected make_model to be a callable returning a model (e.g. lambda: "
            f"wb.MarkovGP(kernel)), got {type(make_model).__name__}"
        )
    fit = _check_kwargs(fit_kwargs, "fit")
    post = _check_kwargs(posterior_kwargs, "posterior")
    return Task(make_model, _wants_label(make_model), dim, fit, post)


def _check_kwargs(kwargs: Mapping[str, Any] | None, method: str) -> dict[str, Any]:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"expected {method}_kwargs to be a mapping, got {type(kwargs).__name__}")
    reserved = sorted(set(kwargs) & set(_RESERVED[method]))
    if reserved:
        raise ValueError(
            f"expected {method}_kwargs without {reserved} (fit_many sets them: pass `dim=` "
            f"and `progress=` to fit_many), got {dict(kwargs)}"
        )
    return dict(kwargs)


def _wants_label(make_model: Callable[..., Any]) -> bool:
    """Whether ``make_model`` takes the item's coordinate (one required positional argument)."""
    try:
        params = inspect.signature(make_model).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: call without arguments
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in positional and p.default is p.empty]
    required_kw = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if len(required) > 1 or required_kw:
        raise TypeError(
            "expected make_model to take no argument or one (the item's coordinate along "
            f"`over`), got signature {inspect.signature(make_model)}"
        )
    return len(required) == 1


def _labels(da: xr.DataArray, over: str) -> list[Any]:
    if over not in da.coords:
        return list(range(da.sizes[over]))
    # .item() gives plain Python values, but an int of nanoseconds for datetimes: keep those
    return [
        v.item() if isinstance(v, np.generic) and not isinstance(v, _TIMES) else v
        for v in da[over].values
    ]


_TIMES = (np.datetime64, np.timedelta64)
