"""Running :func:`~workbench.scale.fit_many` items: in this process or as Dask futures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.models.rng import forked_rng
from workbench.progress import progress_bar

__all__ = ["ItemResult", "Task", "fit_one", "run_dask", "run_serial", "single_torch_thread"]


@dataclass(frozen=True)
class Task:
    """What every item shares: shipped with each task (cloudpickle handles lambdas)."""

    make_model: Callable[..., Any]
    pass_label: bool  # call make_model(label) rather than make_model()
    dim: str
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    posterior_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemResult:
    """One item's outcome: plain data (no model), so it travels cheaply back from a worker."""

    posterior: xr.Dataset | None
    log_marginal_likelihood: xr.DataArray | None  # scalar, or over the item's batch dims
    hyperparameters: dict[str, float]  # flattened, natural scale
    error: str  # "" when the item succeeded, else "ExceptionType: message"


_thread_lock = threading.Lock()
_thread_users = 0
_saved_threads = 1


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """One intra-op torch thread while any item runs in this process, then the old count.

    ``torch.set_num_threads`` is process-global; a counter keeps concurrent items (a threaded
    worker, ``processes=False``) from restoring the count under each other.
    """
    global _thread_users, _saved_threads
    with _thread_lock:
        if _thread_users == 0:
            _saved_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        _thread_users += 1
    try:
        yield
    finally:
        with _thread_lock:
            _thread_users -= 1
            if _thread_users == 0:
                torch.set_num_threads(_saved_threads)


def fit_one(item: xr.DataArray, label: Any, seed: int, task: Task, catch: bool) -> ItemResult:
    """Build, fit and summarise one item's model (runs in the worker)."""
    with single_torch_thread(), forked_rng():
        torch.manual_seed(seed)
        try:
            model = task.make_model(label) if task.pass_label else task.make_model()
            model.fit(item, dim=task.dim, progress=False, **task.fit_kwargs)
            posterior = model.posterior(item, dim=task.dim, **task.posterior_kwargs)
            lml = model.log_marginal_likelihood(item, dim=task.dim)
            hyperparameters = _flatten(model.hyperparameters())
        except Exception as err:  # reported by coordinate; the other items go on
            if not catch:
                raise
            return ItemResult(None, None, {}, _describe(err))
    lml = lml if isinstance(lml, xr.DataArray) else xr.DataArray(float(lml))
    return ItemResult(posterior, lml.rename(None), hyperparameters, "")


def _flatten(hyperparameters: Mapping[str, float | list]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in hyperparameters.items():
        if not isinstance(value, list):
            out[name] = float(value)
            continue
        values = np.asarray(value, dtype=np.float64)
        for index in np.ndindex(values.shape):
            out[f"{name}[{','.join(map(str, index))}]"] = float(values[index])
    return out


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def run_serial(
    items: Sequence[xr.DataArray],
    labels: Sequence[Any],
    seeds: Sequence[int],
    task: Task,
    catch: bool,
    progress: bool | None,
) -> list[ItemResult]:
    """Fit the items one after another in this process, in order."""
    results = []
    with progress_bar(len(items), "fit_many", progress) as bar:
        for item, label, seed in zip(items, labels, seeds, strict=True):
            results.append(fit_one(item, label, seed, task, catch))
            bar.update(1)
    return results


def run_dask(
    client: Any,
    items: Sequence[xr.DataArray],
    labels: Sequence[Any],
    seeds: Sequence[int],
    task: Task,
    catch: bool,
    progress: bool | None,
) -> list[ItemResult]:
    """Fit the items as futures on ``client``'s cluster; results come back in item order."""
    # futures rather than apply_ufunc: each item returns a whole Dataset and fails on its own
    from distributed import Client, as_completed

    if not isinstance(client, Client):
        raise TypeError(f"expected a dask.distributed.Client or None, got {type(client).__name__}")
    if any(item.chunks is not None for item in items):
        data = client.compute(list(items))  # dask-backed: load each item on the cluster
    else:
        data = client.scatter(list(items))  # ship each series once, outside the task graph
    futures = client.map(
        fit_one, data, labels, seeds, task=task, catch=catch, key="fit_many", pure=False
    )
    try:
        with progress_bar(len(futures), "fit_many", progress) as bar:
            for _ in as_completed(futures):
                bar.update(1)
        return [_collect(future, catch) for future in futures]
    except BaseException:  # e.g. KeyboardInterrupt in a notebook: stop the cluster's work too
        client.cancel(futures)
        raise
    finally:
        client.cancel(data)


def _collect(future: Any, catch: bool) -> ItemResult:
    """A finished future's item; a lost one (killed worker, unpicklable model) as an error."""
    if future.status == "finished" or not catch:
        return future.result()
    try:
        future.result()
    except Exception as err:  # the remote exception, KilledWorker or CancelledError
        return ItemResult(None, None, {}, _describe(err))
    raise AssertionError(f"a future in state {future.status!r} returned a result")
