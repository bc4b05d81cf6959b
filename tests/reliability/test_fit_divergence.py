"""Fit robustness for every model: injected divergence (NaN objectives, exploded or collapsed
hyper-parameters, failed factorisations) is rolled back to the last good state and either
restarted or reported by ``FitDivergedError`` with advice; parameters and posteriors stay
finite. Plus constructor validation of hyper-parameters (kernels, likelihoods, models)."""

from __future__ import annotations

import copy
import math

import gpytorch
import numpy as np
import pyro
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.errors import FitDivergedError, ValueRangeError
from workbench.models import latent_trajectory as latent_module
from workbench.models.divergence import check_hyperparameters, state_problem
from workbench.models.training import optimize

NAN = float("nan")
BAD_POSITIVE = [0.0, -1.0, NAN, math.inf]


# -- helpers ---------------------------------------------------------------------------------
class Poison:
    """A switch that makes an objective NaN (``persistent``) or just the next ``times`` calls."""

    def __init__(self) -> None:
        self.left = 0

    def arm(self, times: float = math.inf) -> None:
        self.left = times

    def __call__(self) -> bool:
        if self.left > 0:
            self.left -= 1
            return True
        return False


def _poison_method(monkeypatch, obj, name: str, poison: Poison, index=None) -> None:
    """Make ``obj.name`` return NaN (its tensor or float result, or item ``index`` of a tuple)
    while ``poison`` fires."""
    original = getattr(obj, name)

    def wrapped(*args, **kwargs):
        out = original(*args, **kwargs)
        if not poison():
            return out
        if index is not None:
            return (*out[:index], NAN, *out[index + 1 :])
        return out * NAN

    monkeypatch.setattr(obj, name, wrapped)


def _arm_after(poison: Poison, step: int, times: float = math.inf):
    """A fit callback that arms ``poison`` after step ``step`` has been committed."""

    def callback(current: int, loss: float) -> None:
        if current == step:
            poison.arm(times)

    return callback


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(model: torch.nn.Module, reference: torch.nn.Module, skip=()) -> None:
    got, want = _state(model), _state(reference)
    assert got.keys() == want.keys()
    for key in want:
        if key.startswith(tuple(skip)):
            continue
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-10, msg=key)


def _assert_finite_state(model: torch.nn.Module) -> None:
    assert state_problem(model) is None, state_problem(model)
    for name, param in model.named_parameters():
        assert bool(torch.isfinite(param).all()), name


def _assert_finite_dataset(ds: xr.Dataset) -> None:
    for name in ("mean", "variance", "latent_mean", "latent_variance"):
        if name in ds:
            values = ds[name].values
            assert np.isfinite(values[~np.isnan(values)]).all() and not np.isnan(values).all()


def _assert_diverges_and_rolls_back(
    model, reference, poison: Poison, data, match: str, arm_after: int, fit: dict, committed: dict
) -> None:
    """Poisoned after step ``arm_after``, ``model.fit(data, **fit)`` raises FitDivergedError
    (``match``) and keeps the state of ``reference`` fitted unpoisoned with ``committed``; its
    posterior is finite. The poison is disarmed before the reference fit (it may be patched into
    shared code)."""
    with pytest.raises(FitDivergedError, match=match):
        model.fit(data, **fit, progress=False, callback=_arm_after(poison, arm_after))
    poison.arm(0)
    reference.fit(data, **committed, progress=False)
    _assert_same_state(model, reference)
    _assert_finite_dataset(model.posterior(data))


def _series(n: int = 60, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 10.0, n)
    y = np.sin(x) + 0.2 * rng.normal(size=n)
    return xr.DataArray(y, dims="time", coords={"time": x}, name="y")


def _counts(n: int = 80, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 10.0, n)
    return xr.DataArray(rng.poisson(np.exp(np.sin(x))), dims="time", coords={"time": x})


def _exact() -> wb.ExactGP:
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
    return wb.ExactGP(kernel, noise=0.1)


def _markov(**kwargs) -> wb.MarkovGP:
    return wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), noise=0.1, **kwargs)


ADVICE = r"restored to the last finite values\. Try "


# -- optimize(): the shared loop -------------------------------------------------------------
class _Positive(torch.nn.Module):
    """One softplus-constrained scalar, as a kernel's lengthscale."""

    def __init__(self) -> None:
        super().__init__()
        self.raw_scale = torch.nn.Parameter(torch.tensor(0.0, dtype=torch.float64))
        self.raw_scale_constraint = gpytorch.constraints.Positive()


def test_optimize_rolls_back_an_exploding_raw_value_and_continues_with_smaller_steps():
    module = _Positive()
    # an unbounded objective: Adam moves the raw value by ~lr per step; 1e17 crosses 1/eps
    losses = optimize(module, lambda: -module.raw_scale, steps=4, lr=1e17, progress=False)
    assert len(losses) == 2  # two rollbacks (lr 1e17, 1e16), then steps of 1e15 are fine
    raw = float(module.raw_scale.detach())
    assert math.isfinite(raw) and 0 < raw <= 1 / torch.finfo(torch.float64).eps


def test_optimize_rolls_back_a_positive_value_that_underflows_to_zero():
    module = _Positive()
    losses = optimize(module, lambda: module.raw_scale, steps=3, lr=1e4, progress=False)
    assert len(losses) == 1  # raw -1e4 and -1e3 give softplus = 0 exactly; -100 does not
    value = float(module.raw_scale_constraint.transform(module.raw_scale.detach()))
    assert 0 < value < 1e-40


def test_optimize_rejects_nan_gradients_and_keeps_the_parameters():
    module = _Positive()
    start = _state(module)

    def loss():  # finite value, NaN gradient (0 * inf)
        return module.raw_scale * 0.0 + 0.0 * torch.sqrt(module.raw_scale * 0.0)

    with pytest.raises(FitDivergedError, match=r"gradient is not finite.*smaller `lr`"):
        optimize(module, loss, steps=5, lr=0.1, progress=False)
    _assert_same_state(module, _Reference(start))


class _Reference(torch.nn.Module):
    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.raw_scale = torch.nn.Parameter(state["raw_scale"])
        self.raw_scale_constraint = gpytorch.constraints.Positive()


def test_optimize_restores_parameters_outside_the_module():
    module, outside = torch.nn.Module(), torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    calls = []

    def loss():
        calls.append(1)
        return outside.square().sum() * (NAN if len(calls) > 2 else 1.0)

    with pytest.raises(FitDivergedError):
        optimize(module, loss, steps=8, lr=0.1, params=[outside], progress=False)
    assert bool(torch.isfinite(outside).all())
    assert float(outside[0]) < 1.0  # the two good steps were kept


# -- ExactGP / MarkovGP (Gaussian): optimize() with the marginal or Whittle likelihood ------
@pytest.mark.parametrize("make", [_exact, _markov], ids=["ExactGP", "MarkovGP"])
def test_regression_nan_loss_restores_the_last_good_step_and_raises_with_advice(make, monkeypatch):
    da = _series()
    model, reference, poison = make(), make(), Poison()
    _poison_method(monkeypatch, model, "_log_marginals", poison)
    with pytest.raises(FitDivergedError, match=r"step 5 .*after 3 restarts.*" + ADVICE):
        model.fit(da, steps=10, progress=False, callback=_arm_after(poison, 1))
    reference.fit(da, steps=2, progress=False)  # the two committed steps
    _assert_same_state(model, reference)
    poison.arm(0)
    _assert_finite_dataset(model.posterior(da))


@pytest.mark.parametrize("make", [_exact, _markov], ids=["ExactGP", "MarkovGP"])
def test_regression_transient_nan_restarts_and_finishes(make, monkeypatch):
    da, model, poison = _series(), make(), Poison()
    _poison_method(monkeypatch, model, "_log_marginals", poison)
    model.fit(da, steps=6, progress=False, callback=_arm_after(poison, 1, times=1))
    assert len(model.fit_losses) == 5 and np.isfinite(model.fit_losses).all()
    _assert_finite_state(model)
    _assert_finite_dataset(model.posterior(da))


@pytest.mark.parametrize(
    ("make", "raw", "value"),
    [
        (_markov, "kernel.raw_lengthscale", 1e30),  # exploded: beyond 1/eps
        (_markov, "kernel.raw_lengthscale", -1e4),  # softplus underflows to 0
        (_markov, "kernel.raw_outputscale", math.inf),  # overflowed
        (_exact, "kernel.base_kernel.raw_lengthscale", 1e30),
        (_exact, "kernel.raw_outputscale", NAN),
    ],
)
def test_regression_exploded_hyperparameter_mid_fit_is_rolled_back(make, raw, value):
    da, model = _series(), make()
    good = {}

    def callback(step, loss):
        if step == 1:
            good.update(_state(model))
            with torch.no_grad():
                model.get_parameter(raw).fill_(value)

    model.fit(da, steps=4, progress=False, callback=callback)
    assert len(model.fit_losses) == 3  # the step from the corrupted state was undone
    _assert_finite_state(model)
    assert abs(float(model.get_parameter(raw))) < 1e15
    _assert_finite_dataset(model.posterior(da))


def test_markov_gp_whittle_nan_loss_restores_and_raises(monkeypatch):
    da, model, reference, poison = _series(64), _markov(), _markov(), Poison()
    original = model._whittle_term

    def term(obs):
        value, count = original(obs)
        return (lambda: value() * (NAN if poison() else 1.0)), count

    monkeypatch.setattr(model, "_whittle_term", term)
    with pytest.raises(FitDivergedError, match=r"3 restarts.*smaller `lr`"):
        model.fit(da, method="whittle", steps=10, progress=False, callback=_arm_after(poison, 0))
    reference.fit(da, method="whittle", steps=1, progress=False)
    _assert_same_state(model, reference)
    _assert_finite_dataset(model.posterior(da))


# -- MarkovGP with a non-Gaussian likelihood: variational EM (CVI + M-steps) ----------------
def _poisson_gp() -> wb.MarkovGP:
    return wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), likelihood="poisson", cvi_steps=5)


def test_cvi_nan_elbo_restores_the_last_round_and_raises_with_advice(monkeypatch):
    counts, model, reference, poison = _counts(), _poisson_gp(), _poisson_gp(), Poison()
    _poison_method(monkeypatch, model, "_elbo", poison)
    with pytest.raises(FitDivergedError, match=r"EM round 5 .*3 restarts.*smaller cvi_lr"):
        model.fit(counts, steps=8, progress=False, callback=_arm_after(poison, 1))
    reference.fit(counts, steps=2, progress=False)
    _assert_same_state(model, reference)
    poison.arm(0)
    _assert_finite_dataset(model.posterior(counts))


def test_cvi_failure_restarts_with_smaller_damping_and_finishes(monkeypatch):
    counts, model, scales = _counts(), _poisson_gp(), []
    original = model._run_cvi

    def run_cvi(obs, sites=None, steps=None, scale=1.0):
        scales.append(scale)
        if len(scales) == 2:
            raise FloatingPointError("CVI produced a non-finite ELBO")
        return original(obs, sites, steps, scale)

    monkeypatch.setattr(model, "_run_cvi", run_cvi)
    model.fit(counts, steps=4, progress=False)
    assert scales == [1.0, 1.0, 0.1, 0.1]
    assert len(model.fit_elbo) == 3 and np.isfinite(model.fit_elbo).all()
    _assert_finite_state(model)


def test_cvi_m_step_that_always_fails_rolls_back_the_round(monkeypatch):
    counts, model = _counts(), _poisson_gp()
    start = copy.deepcopy(model)
    original = model._pseudo_data_loss

    def pseudo_data_loss(*args, **kwargs):
        loss = original(*args, **kwargs)
        return lambda: loss() * NAN

    monkeypatch.setattr(model, "_pseudo_data_loss", pseudo_data_loss)
    with pytest.raises(FitDivergedError, match=r"round 3 \(optimisation step 3: the loss is not"):
        model.fit(counts, steps=6, progress=False)  # m_steps = 5: the M-step gives up itself
    start._initialize_mean(model._observe(counts, "time"))
    _assert_same_state(model, start)  # nothing was committed


# -- LatentTrajectoryGP: variational EM -------------------------------------------------------
@pytest.fixture(scope="module")
def spikes() -> xr.DataArray:
    ds = wb.simulate.latent_spikes(n_units=6, n_latents=1, n_trials=2, n_bins=60, seed=5)
    return ds.spikes


def _latent() -> wb.LatentTrajectoryGP:
    return wb.LatentTrajectoryGP(1, likelihood=wb.likelihoods.Poisson(bin_width=0.01), cvi_steps=3)


def test_latent_nan_elbo_restores_the_last_round_and_raises(spikes, monkeypatch):
    model, reference, poison = _latent(), _latent(), Poison()
    original = latent_module.elbo
    monkeypatch.setattr(
        latent_module, "elbo", lambda *a: NAN if poison() else original(*a)
    )  # fmt: skip
    _assert_diverges_and_rolls_back(
        model, reference, poison, spikes, r"EM round 5 .*3 restarts.*cvi_lr", arm_after=1,
        fit={"steps": 8, "m_steps": 2}, committed={"steps": 2, "m_steps": 2},
    )  # fmt: skip


def test_latent_exploded_lengthscale_and_failed_factorisation_are_rolled_back(spikes, monkeypatch):
    model, rounds = _latent(), []
    original_mstep, original_estep = latent_module.mstep, model._estep

    def mstep(model_, *args):
        original_mstep(model_, *args)
        rounds.append(1)
        if len(rounds) == 2:  # an M-step that sends a raw lengthscale to 1e30
            with torch.no_grad():
                model_.latents[0].kernel.raw_lengthscale.fill_(1e30)

    def estep(data, state, steps, scale=1.0):
        if len(rounds) == 3 and scale == 0.1:
            raise torch.linalg.LinAlgError("cholesky: not positive definite")
        return original_estep(data, state, steps, scale)

    monkeypatch.setattr(latent_module, "mstep", mstep)
    monkeypatch.setattr(model, "_estep", estep)
    model.fit(spikes, steps=5, m_steps=2, progress=False)
    assert len(model.fit_elbo) == 3 and np.isfinite(model.fit_elbo).all()
    _assert_finite_state(model)
    assert float(model.latents[0].kernel.raw_lengthscale) < 1e15
    _assert_finite_dataset(model.posterior())


# -- MultitaskGP: optimize() ------------------------------------------------------------------
def _tasks(T: int = 3, P: int = 20, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 10, P))
    values = np.stack([(i + 1) * np.sin(x) + 0.1 * rng.normal(size=P) for i in range(T)])
    values[rng.uniform(size=values.shape) < 0.3] = np.nan
    values[:, 0] = 0.0
    return xr.DataArray(values, dims=("task", "time"), coords={"task": ["a", "b", "c"], "time": x})


def test_multitask_nan_bound_restores_and_raises_then_posterior_is_finite(monkeypatch):
    da, model, reference, poison = _tasks(), wb.MultitaskGP(), wb.MultitaskGP(), Poison()
    _poison_method(monkeypatch, model, "_bound", poison)
    with pytest.raises(FitDivergedError, match=r"3 restarts.*" + ADVICE):
        model.fit(da, steps=8, progress=False, callback=_arm_after(poison, 0))
    reference.fit(da, steps=1, progress=False)
    _assert_same_state(model, reference)
    poison.arm(0)
    _assert_finite_dataset(model.posterior(da))


def test_multitask_exploded_lengthscale_is_rolled_back():
    da, model = _tasks(), wb.MultitaskGP()

    def callback(step, loss):
        if step == 0:
            with torch.no_grad():
                model.kernel.latents[0].raw_lengthscale.fill_(1e30)

    model.fit(da, steps=3, progress=False, callback=callback)
    assert len(model.fit_losses) == 2
    _assert_finite_state(model)
    assert float(model.kernel.latents[0].raw_lengthscale.max()) < 1e15


# -- Magma / MagmaClust: variational EM -------------------------------------------------------
def _magma_tasks(M: int = 6, P: int = 20, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 10, P))
    values = np.full((M, P), np.nan)
    for i in range(M):
        idx = np.sort(rng.choice(P, 8, replace=False))
        values[i, idx] = (i % 2) * 2.0 + np.sin(x[idx]) + 0.3 * rng.normal(size=idx.size)
    return xr.DataArray(values, dims=("task", "time"), coords={"time": x, "task": np.arange(M)})


@pytest.mark.parametrize("make", [wb.Magma, lambda **kw: wb.MagmaClust(2, **kw)])
def test_magma_nan_elbo_restores_and_raises_and_predict_never_returns_nan(make, monkeypatch):
    da, poison = _magma_tasks(), Poison()
    model, reference = make(max_iter=10, m_steps=3), make(max_iter=2, m_steps=3)
    _poison_method(monkeypatch, model, "_estep", poison, index=2)
    with pytest.raises(FitDivergedError, match=r"EM iteration 5 .*3 restarts.*m_steps"):
        model.fit(da, progress=False, callback=_arm_after(poison, 1))
    reference.fit(da, progress=False)
    _assert_same_state(model, reference, skip=["hyper_"])  # set by a completed fit only
    with pytest.raises(RuntimeError, match="fit"):  # a failed first fit: no posterior to give
        model.predict(da.isel(task=0))


def test_magma_exploded_task_lengthscale_in_an_m_step_is_rolled_back(monkeypatch):
    da, model, calls = _magma_tasks(), wb.Magma(max_iter=4, m_steps=3), []
    original = model._mstep

    def mstep(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(kwargs.get("lr", 1.0))
        if len(calls) == 2:
            with torch.no_grad():
                model.task_kernel.base_kernel.raw_lengthscale.fill_(1e30)

    monkeypatch.setattr(model, "_mstep", mstep)
    model.fit(da, progress=False)
    assert calls[2:] == [0.1] * (len(calls) - 2)  # retried with 10x smaller L-BFGS steps
    _assert_finite_state(model)
    assert float(model.task_kernel.base_kernel.raw_lengthscale) < 1e15
    _assert_finite_dataset(model.predict(da.isel(task=0).dropna("time")))


def test_magma_failed_cholesky_in_every_e_step_raises_with_advice(monkeypatch):
    da, model = _magma_tasks(), wb.Magma(max_iter=6)

    def estep(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.cholesky: The factorization could not be completed")

    monkeypatch.setattr(model, "_estep", estep)
    with pytest.raises(FitDivergedError, match=r"factorization.*rescaling the data"):
        model.fit(da, progress=False)
    _assert_finite_state(model)


# -- SparseInverseCholeskyGP: Adam epochs on minibatches ------------------------------------
def _points(n: int = 120, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 2))
    y = np.sin(6 * X[:, 0]) + np.cos(4 * X[:, 1]) + 0.3 * rng.normal(size=n)
    return xr.DataArray(y, dims="site", coords={"lon": ("site", X[:, 0]), "lat": ("site", X[:, 1])})


def _sic() -> wb.SparseInverseCholeskyGP:
    return wb.SparseInverseCholeskyGP(rho=2.0, inputs=["lon", "lat"])


def test_sic_nan_minibatch_elbo_restores_the_last_epoch_and_raises(monkeypatch):
    da, model, reference, poison = _points(), _sic(), _sic(), Poison()
    _poison_method(monkeypatch, model, "_elbo", poison)
    with pytest.raises(FitDivergedError, match=r"epoch 4 .*3 restarts.*smaller lr"):
        model.fit(da, epochs=8, batch_size=64, progress=False, callback=_arm_after(poison, 0))
    reference.fit(da, epochs=1, batch_size=64, progress=False)
    _assert_same_state(model, reference)
    torch.testing.assert_close(model.nu, reference.nu, rtol=0, atol=1e-10)
    poison.arm(0)
    _assert_finite_dataset(model.posterior())


def test_sic_exploded_lengthscale_never_reaches_the_reordering(monkeypatch):
    da, model, epochs = _points(), _sic(), []
    original = model._epoch

    def epoch(*args):
        original(*args)
        epochs.append(1)
        if len(epochs) == 2:
            with torch.no_grad():
                model.kernel.base_kernel.raw_lengthscale.fill_(1e30)

    monkeypatch.setattr(model, "_epoch", epoch)
    model.fit(da, epochs=3, variational_epochs=1, batch_size=64, progress=False)
    assert len(model.elbo_trace) == 3 and np.isfinite(model.elbo_trace).all()
    _assert_finite_state(model)
    assert bool(torch.isfinite(model.nu).all() and torch.isfinite(model.raw_v).all())
    _assert_finite_dataset(model.posterior())


# -- GPVAE / MultimodalGPVAE: Pyro SVI --------------------------------------------------------
@pytest.fixture(scope="module")
def trials() -> xr.Dataset:
    ds = wb.simulate.multimodal_trials(n_trials=12, n_bins=20, n_units=10, image_size=6, seed=3)
    return ds[["spikes", "frames"]]


def _gpvae() -> wb.MultimodalGPVAE:
    return wb.MultimodalGPVAE({"spikes": "poisson", "frames": "gaussian"}, seed=1)


def test_gpvae_nan_elbo_restores_the_last_good_step_and_raises(trials, monkeypatch):
    model, reference, poison = _gpvae(), _gpvae(), Poison()
    _poison_method(monkeypatch, pyro.infer.SVI, "step", poison)
    _assert_diverges_and_rolls_back(
        model, reference, poison, trials, r"epoch 2 .*3 restarts.*smaller lr", arm_after=0,
        fit={"epochs": 4, "batch_size": 6}, committed={"epochs": 1, "batch_size": 6},
    )  # fmt: skip


def test_gpvae_nan_parameter_after_a_step_is_rolled_back(trials, monkeypatch):
    model = wb.GPVAE("spikes", "poisson", n_latents=1, seed=0)
    data, calls = trials[["spikes"]], []
    original = pyro.infer.SVI.step

    def step(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                next(model.nets.parameters()).fill_(NAN)
        return loss

    monkeypatch.setattr(pyro.infer.SVI, "step", step)
    model.fit(data, epochs=3, batch_size=6, progress=False)
    assert len(calls) == 6 and np.isfinite(model.elbo_trace).all()
    _assert_finite_state(model)
    _assert_finite_dataset(model.posterior(data))


# -- constructor validation -------------------------------------------------------------------
@pytest.mark.parametrize("bad", BAD_POSITIVE)
@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("lengthscale", lambda v: wb.kernels.MaternKernel(lengthscale=v)),
        ("outputscale", lambda v: wb.kernels.MaternKernel(outputscale=v)),
        ("lengthscale", lambda v: wb.kernels.HidaMaternKernel(lengthscale=v)),
        ("outputscale", lambda v: wb.kernels.HidaMaternKernel(outputscale=v)),
        ("noise", lambda v: wb.likelihoods.Gaussian(noise=v)),
        ("bin_width", lambda v: wb.likelihoods.Poisson(bin_width=v)),
        ("dispersion", lambda v: wb.likelihoods.NegativeBinomial(dispersion=v)),
        ("scale", lambda v: wb.likelihoods.StudentT(scale=v)),
        ("noise", lambda v: wb.ExactGP(gpytorch.kernels.RBFKernel(), noise=v)),
        ("noise", lambda v: wb.MarkovGP(wb.kernels.MaternKernel(), noise=v)),
        ("rho", lambda v: wb.SparseInverseCholeskyGP(rho=v)),
        ("lengthscale", lambda v: wb.GPVAE(lengthscale=v)),
    ],
)
def test_invalid_positive_hyperparameters_fail_at_construction(name, build, bad):
    # the models' noise has a floor of 1e-8 (its GPyTorch constraint)
    with pytest.raises(ValueRangeError, match=rf"expected (a finite )?{name} > (0|1e-08), got"):
        build(bad)


@pytest.mark.parametrize("bad", [NAN, math.inf, -math.inf])
def test_hida_matern_frequency_must_be_finite(bad):
    with pytest.raises(ValueRangeError, match="expected a finite frequency"):
        wb.kernels.HidaMaternKernel(frequency=bad)
    assert float(wb.kernels.HidaMaternKernel(frequency=-3.0).frequency) == -3.0  # |omega|


def _rbf(value: float) -> gpytorch.kernels.Kernel:
    kernel = gpytorch.kernels.RBFKernel()
    with torch.no_grad():  # GPyTorch itself accepts 0 and inf (raw -inf / inf)
        kernel.raw_lengthscale.fill_(kernel.raw_lengthscale_constraint.inverse_transform(
            torch.tensor(value)))  # fmt: skip
    return kernel


@pytest.mark.parametrize("bad", [0.0, math.inf, NAN])
@pytest.mark.parametrize(
    "build",
    [
        lambda k: wb.ExactGP(k),
        lambda k: wb.MultitaskGP(k),
        lambda k: wb.Magma(mean_kernel=k),
        lambda k: wb.MagmaClust(2, task_kernel=k),
        lambda k: wb.SparseInverseCholeskyGP(k),
    ],
    ids=["ExactGP", "MultitaskGP", "Magma", "MagmaClust", "SparseInverseCholeskyGP"],
)
def test_gpytorch_kernels_with_invalid_hyperparameters_fail_at_construction(build, bad):
    with pytest.raises(ValueRangeError, match=r"expected (a finite )?\w*kernel\.lengthscale.*got"):
        build(_rbf(bad))


def test_other_invalid_model_arguments():
    with pytest.raises(ValueRangeError, match="expected a finite nugget >= 0"):
        wb.SparseInverseCholeskyGP(nugget=-1e-6)
    with pytest.raises(ValueRangeError, match="weight of 'frames'"):
        wb.MultimodalGPVAE({"frames": "gaussian"}, weights={"frames": -1.0})
    with pytest.raises(ValueError, match="cvi_lr"):
        wb.LatentTrajectoryGP(1, cvi_lr=0.0)
    with pytest.raises(ValueRangeError, match="lengthscale > 0"):
        wb.LatentTrajectoryGP(1, kernel=wb.kernels.MaternKernel(lengthscale=0.0))


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("noise", -1.0, r"expected noise > 1e-08, got -1"),
        ("noise", 0.0, r"expected noise > 1e-08, got 0"),
        ("kernel.lengthscale", 0.0, r"expected kernel.lengthscale > 0, got 0"),
        ("kernel.outputscale", math.inf, r"expected kernel.outputscale > 0, got inf"),
        ("mean", NAN, r"expected mean finite, got nan"),
    ],
)
def test_set_hyperparameter_refuses_invalid_values_and_keeps_the_old_one(name, bad, message):
    model = _markov()
    before = _state(model)
    with pytest.raises(ValueRangeError, match=message):
        model.set_hyperparameter(name, bad)
    assert all(torch.equal(v, before[k]) for k, v in _state(model).items())


def test_gpvae_lengthscale_setter_refuses_nan(trials):
    model = wb.GPVAE("spikes", "poisson", n_latents=1, seed=0)
    model.fit(trials[["spikes"]], epochs=1, batch_size=12, progress=False)
    with pytest.raises(ValueRangeError, match="lengthscale"):
        model.set_hyperparameter("lengthscale.latent_0", NAN)


def test_check_hyperparameters_names_the_offending_parameter():
    kernel = gpytorch.kernels.ScaleKernel(_rbf(0.0))
    with pytest.raises(ValueRangeError, match=r"expected kernel.base_kernel.lengthscale > 0"):
        check_hyperparameters(kernel, "kernel")
    check_hyperparameters(gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel()), "kernel")


# -- posteriors never carry NaN silently --------------------------------------------------------
def _corrupt(param: torch.Tensor) -> None:
    with torch.no_grad():
        param.view(-1)[0] = NAN


def test_posteriors_of_a_corrupted_model_raise_instead_of_returning_nan(spikes, trials):
    da = _series()
    exact = _exact().fit(da, steps=2, progress=False)
    _corrupt(exact.mean)
    markov = _markov().fit(da, steps=2, progress=False)
    _corrupt(markov.kernel.raw_lengthscale)
    multitask = wb.MultitaskGP().fit(_tasks(), steps=2, progress=False)
    _corrupt(multitask.task_mean)
    latent = _latent().fit(spikes, steps=1, m_steps=1, progress=False)
    _corrupt(latent.C)
    magma = wb.Magma(max_iter=2).fit(_magma_tasks(), progress=False)
    magma.mean_constant.fill_(NAN)
    sparse = _sic().fit(_points(), epochs=1, batch_size=64, progress=False)
    with torch.no_grad():
        sparse.nu[0] = NAN
    gpvae = wb.GPVAE("spikes", "poisson", n_latents=1, seed=0)
    gpvae.fit(trials[["spikes"]], epochs=1, batch_size=12, progress=False)
    _corrupt(next(gpvae.nets.parameters()))
    calls = [
        lambda: exact.posterior(da),
        lambda: markov.posterior(da),
        lambda: multitask.posterior(_tasks()),
        lambda: latent.posterior(),
        lambda: magma.predict(_magma_tasks().isel(task=0).dropna("time")),
        lambda: sparse.posterior(),
        lambda: gpvae.posterior(trials[["spikes"]]),
    ]
    for call in calls:
        with pytest.raises(FitDivergedError, match=r"expected finite (predictive|posterior)"):
            call()
