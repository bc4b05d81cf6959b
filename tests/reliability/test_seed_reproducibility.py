"""Every stochastic public function takes ``seed=``: the same seed gives bit-for-bit the same
result run to run (whatever the global RNGs hold), a different seed a different one, and the
global RNG states of torch, NumPy and ``random`` are left exactly as they were.

Covered: the simulators; ``to_inference_data`` of every model; ``sample_latents``,
``MagmaClust.sample``, ``MarkovGP``/``MultitaskGP.sample_hyperparameters``, ``GPVAE.elbo``;
fitting where the seed enters (MultitaskGP's coregionalisation start, MagmaClust's k-means start,
SparseInverseCholeskyGP's minibatches, the GP-VAEs' networks, minibatches and modality
dropout); ``select_n_clusters``; ``fit_many``; the likelihood samplers; the state-space prior
sampler; the InteractionKernel start; the GPyTorch peer baselines in ``workbench.testing``.
"""

from __future__ import annotations

import functools
import random
import warnings
from collections.abc import Callable
from typing import Any

import gpytorch
import numpy as np
import pytest
import torch
import xarray as xr
from edge_checks import import_golden

import workbench as wb
from workbench.kernels.multitask import InteractionKernel
from workbench.likelihoods import (
    Bernoulli,
    Gaussian,
    NegativeBinomial,
    Poisson,
    StudentT,
    sample_observations,
)
from workbench.ssm import sample_state_space_prior
from workbench.testing.peers import fit_svgp, fit_vnngp

golden = import_golden()


@functools.cache
def _fitted(case: str) -> tuple[Any, dict]:
    """A tiny fitted model (the golden-file builders) and its inputs, built once."""
    return golden.build(case)


# -- outputs as comparable leaves ----------------------------------------------------------------
def _leaves(obj: Any, path: str = "") -> dict[str, np.ndarray]:
    """Every number in ``obj`` (labelled data, ArviZ groups, tensors, modules, containers) as
    named NumPy arrays; xarray attrs other than ``created_at`` are compared as strings."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if hasattr(obj, "groups") and callable(obj.groups):  # ArviZ 0.x InferenceData
        obj = {g: obj[g] for g in obj.groups()}
    if isinstance(obj, xr.DataTree):
        obj = {name: node.to_dataset() for name, node in obj.children.items()}
    if isinstance(obj, xr.DataArray):
        obj = obj.to_dataset(name="__value__")
    if isinstance(obj, xr.Dataset):
        for name, var in obj.variables.items():
            out[f"{path}/{name}"] = np.asarray(var.values)
        attrs = {k: v for k, v in obj.attrs.items() if k != "created_at"}
        out[f"{path}/attrs"] = np.asarray(repr(sorted(attrs.items())))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            out |= _leaves(value, f"{path}/{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            out |= _leaves(value, f"{path}[{i}]")
    elif isinstance(obj, torch.Tensor):
        out[path] = obj.detach().cpu().numpy()
    else:
        out[path] = np.asarray(obj)
    return out


def _identical(a: Any, b: Any) -> bool:
    la, lb = _leaves(a), _leaves(b)
    if list(la) != list(lb):
        return False
    return all(
        x.dtype == y.dtype
        and x.shape == y.shape
        and np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")
        for x, y in zip(la.values(), lb.values(), strict=True)
    )


def _rng_states() -> tuple:
    return torch.random.get_rng_state(), np.random.get_state(), random.getstate()  # noqa: NPY002


def _assert_same_rng_states(before: tuple, after: tuple) -> None:
    assert torch.equal(before[0], after[0]), "torch's global RNG state changed"
    assert before[1][0] == after[1][0] and np.array_equal(before[1][1], after[1][1])
    assert before[1][2:] == after[1][2:], "NumPy's global RNG state changed"
    assert before[2] == after[2], "random's state changed"


# -- the stochastic functions, each as seed -> output --------------------------------------------
def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _idata(case: str, seed: int) -> Any:
    model, inputs = _fitted(case)
    kind = case.split("_")[0]
    if kind in ("ExactGP", "MarkovGP", "MultitaskGP"):
        return model.to_inference_data(inputs["data"], num_samples=4, seed=seed)
    if kind in ("LatentTrajectoryGP", "Magma", "MagmaClust"):
        return model.to_inference_data(num_samples=4, log_likelihood=True, seed=seed)
    if kind == "SparseInverseCholeskyGP":
        return model.to_inference_data(num_samples=4, seed=seed)
    return model.to_inference_data(inputs["data"], draws=3, seed=seed)


def _random_tasks() -> xr.DataArray:
    """Curves without cluster structure: k-means' labels depend on its seed."""
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 5.0, 6)
    y = rng.standard_normal((8, 6))
    return xr.DataArray(y, dims=("task", "time"), coords={"task": np.arange(8), "time": t})


def _magma_fit(seed: int) -> Any:
    model = wb.MagmaClust(3, max_iter=1, seed=seed)
    model = _quiet(lambda: model.fit(_random_tasks(), progress=False))
    return model, model.memberships()


def _multitask_fit(seed: int, interaction: bool = False) -> Any:
    model = wb.MultitaskGP(n_latents=2, interaction=interaction, seed=seed)
    return model.fit(golden._tasks(M=3, P=6), steps=1, progress=False)


def _sparse_fit(seed: int) -> Any:
    model = wb.SparseInverseCholeskyGP(rho=2.0, n_neighbors=8, seed=seed)
    model.fit(golden._points(n=40), epochs=1, batch_size=8, progress=False)
    return model, model.elbo_trace


def _gpvae_fit(seed: int, multimodal: bool = False) -> Any:
    data = golden._trials()
    if multimodal:
        model = wb.MultimodalGPVAE({"spikes": "poisson", "frames": "gaussian"}, seed=seed)
    else:
        model, data = wb.GPVAE("frames", n_latents=1, seed=seed), data[["frames"]]
    model.fit(data, epochs=1, batch_size=2, progress=False)
    return model, model.elbo_trace


def _fit_many(seed: int) -> xr.Dataset:
    # make_model draws from torch's RNG, which fit_many seeds per item from ``seed``
    def make_model() -> Any:
        lengthscale = 0.5 + float(torch.rand(()))
        return wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5, lengthscale=lengthscale))

    data = golden._tasks(M=2, P=8)
    return wb.fit_many(make_model, data, over="task", fit_kwargs={"steps": 1}, seed=seed)


def _nuts(seed: int) -> Any:
    model = wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5, lengthscale=2.0), noise=0.05)
    data = golden._series()
    return model.sample_hyperparameters(
        data, num_samples=3, warmup_steps=3, seed=seed, fixed=["mean"], progress=False
    )


def _multitask_nuts(seed: int) -> Any:
    model, inputs = _fitted("MultitaskGP")
    return model.sample_hyperparameters(
        inputs["data"], num_samples=3, warmup_steps=3, num_chains=1, seed=seed, progress=False
    )


def _elbo(seed: int) -> float:
    model, inputs = _fitted("GPVAE_frames")  # Gaussian decoder: a reparameterised draw
    return model.elbo(inputs["data"], seed=seed)


def _likelihood_draws(likelihood: Any) -> Callable[[int], torch.Tensor]:
    f = torch.linspace(-1.0, 1.0, 7, dtype=torch.float64)
    return lambda seed: sample_observations(likelihood.double(), f, seed=seed)


def _prior_draws(seed: int) -> torch.Tensor:
    kernel = wb.kernels.MaternKernel(nu=1.5).double()
    return sample_state_space_prior(kernel, torch.linspace(0, 5, 20, dtype=torch.float64), 2,
                                    seed=seed)  # fmt: skip


def _peer(fit: Callable) -> Callable[[int], Any]:
    X = np.random.default_rng(0).uniform(size=(30, 2))
    y = np.sin(3 * X[:, 0])

    def run(seed: int) -> Any:
        kwargs = {"n_inducing": 8} if fit is fit_svgp else {"k": 4}
        predict, _ = _quiet(lambda: fit(X, y, epochs=1, seed=seed, **kwargs))
        return predict(X[:5])

    return run


CASES: dict[str, Callable[[int], Any]] = {
    "simulate.latent_spikes": lambda s: wb.simulate.latent_spikes(
        n_units=3, n_latents=1, n_trials=2, n_bins=20, seed=s
    ),
    "simulate.latent_spikes(gp)": lambda s: wb.simulate.latent_spikes(
        n_units=3, n_latents=1, n_trials=2, n_bins=20, latent="gp", seed=s
    ),
    "simulate.magma_clusters": lambda s: wb.simulate.magma_clusters(n_tasks=4, n_points=5, seed=s),
    "simulate.multimodal_trials": lambda s: wb.simulate.multimodal_trials(
        n_trials=2, n_bins=8, n_units=3, image_size=4, seed=s
    ),
    "simulate.multimodal_trials(keypoints)": lambda s: wb.simulate.multimodal_trials(
        n_trials=2, n_bins=8, n_units=3, behaviour="keypoints", seed=0, population_seed=s
    ),
    "ExactGP.to_inference_data": lambda s: _idata("ExactGP", s),
    "MarkovGP.to_inference_data": lambda s: _idata("MarkovGP", s),
    "MarkovGP.to_inference_data(poisson)": lambda s: _idata("MarkovGP_poisson", s),
    "MarkovGP.sample_hyperparameters": _nuts,
    "LatentTrajectoryGP.sample_latents": lambda s: _fitted("LatentTrajectoryGP")[0].sample_latents(
        4, seed=s
    ),
    "LatentTrajectoryGP.to_inference_data": lambda s: _idata("LatentTrajectoryGP", s),
    "MultitaskGP.fit": _multitask_fit,
    "MultitaskGP.fit(interaction)": lambda s: _multitask_fit(s, interaction=True),
    "MultitaskGP.to_inference_data": lambda s: _idata("MultitaskGP", s),
    "MultitaskGP.sample_hyperparameters": _multitask_nuts,
    "MagmaClust.fit": _magma_fit,
    "MagmaClust.sample": lambda s: _fitted("MagmaClust")[0].sample(
        _fitted("MagmaClust")[1]["new"], num_samples=4, seed=s
    ),
    "MagmaClust.to_inference_data": lambda s: _idata("MagmaClust", s),
    "Magma.to_inference_data": lambda s: _idata("Magma", s),
    "select_n_clusters": lambda s: _quiet(
        lambda: wb.select_n_clusters(_random_tasks(), [3], max_iter=1, seed=s)
    ),
    "SparseInverseCholeskyGP.fit": _sparse_fit,
    "SparseInverseCholeskyGP.to_inference_data": lambda s: _idata("SparseInverseCholeskyGP", s),
    "GPVAE.fit": _gpvae_fit,
    "GPVAE.elbo": lambda s: _elbo(s),
    "GPVAE.to_inference_data": lambda s: _idata("GPVAE", s),
    "MultimodalGPVAE.fit": lambda s: _gpvae_fit(s, multimodal=True),
    "MultimodalGPVAE.to_inference_data": lambda s: _idata("MultimodalGPVAE_frames", s),
    "fit_many": _fit_many,
    "sample_observations(Gaussian)": _likelihood_draws(Gaussian(noise=0.3)),
    "sample_observations(Poisson)": _likelihood_draws(Poisson()),
    "sample_observations(Bernoulli)": _likelihood_draws(Bernoulli()),
    "sample_observations(NegativeBinomial)": _likelihood_draws(NegativeBinomial()),
    "sample_observations(StudentT)": _likelihood_draws(StudentT()),
    "sample_state_space_prior": _prior_draws,
    "InteractionKernel": lambda s: InteractionKernel(n_tasks=3, n_latents=2, rank=2, seed=s),
    "testing.fit_svgp": _peer(fit_svgp),
    "testing.fit_vnngp": _peer(fit_vnngp),
}


@pytest.mark.parametrize("name", list(CASES))
def test_same_seed_same_result_and_global_rng_untouched(name):
    run = CASES[name]
    _quiet(lambda: run(0))  # build any shared fitted model outside the measured calls
    torch.manual_seed(11)
    np.random.seed(11)  # noqa: NPY002
    random.seed(11)
    before = _rng_states()
    first = _quiet(lambda: run(5))
    _assert_same_rng_states(before, _rng_states())
    torch.manual_seed(22)  # other global states: the result must not depend on them
    np.random.seed(22)  # noqa: NPY002
    random.seed(22)
    torch.rand(3)
    second = _quiet(lambda: run(5))
    assert _identical(first, second)


@pytest.mark.parametrize("name", list(CASES))
def test_different_seed_different_result(name):
    run = CASES[name]
    assert not _identical(_quiet(lambda: run(0)), _quiet(lambda: run(1)))


def test_sample_state_space_prior_generator_and_seed_agree():
    kernel = wb.kernels.MaternKernel(nu=2.5).double()
    x = torch.linspace(0, 3, 12, dtype=torch.float64)
    by_seed = sample_state_space_prior(kernel, x, 3, seed=4)
    by_generator = sample_state_space_prior(kernel, x, 3, torch.Generator().manual_seed(4))
    assert torch.equal(by_seed, by_generator)
    assert torch.equal(
        sample_state_space_prior(kernel, x, 3), sample_state_space_prior(kernel, x, 3, seed=0)
    )


def test_sample_observations_generator_and_seed_agree():
    f = torch.zeros(6, dtype=torch.float64)
    likelihood = Poisson().double()
    by_seed = sample_observations(likelihood, f, seed=2)
    assert torch.equal(
        by_seed, sample_observations(likelihood, f, torch.Generator().manual_seed(2))
    )


def test_model_seeds_are_saved_with_the_model(tmp_path):
    """A loaded model keeps its seed (config), so refits and draws reproduce after loading."""
    model = wb.MultitaskGP(n_latents=2, seed=7)
    model.save(tmp_path / "m.wbm")
    assert wb.load(tmp_path / "m.wbm").seed == 7
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
    for made in (wb.MagmaClust(2, seed=7), wb.SparseInverseCholeskyGP(kernel, seed=7)):
        made.save(tmp_path / "x.wbm")
        assert wb.load(tmp_path / "x.wbm").get_config()["seed"] == 7
