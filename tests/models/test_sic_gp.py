"""SparseInverseCholeskyGP: exact on the full pattern, grids, likelihoods, bad input."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.errors import CoordinateError, EmptyDataError


def _points(n=150, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 2))
    y = np.sin(6 * X[:, 0]) + np.cos(4 * X[:, 1]) + np.sqrt(noise) * rng.normal(size=n)
    da = xr.DataArray(y, dims="site", coords={"lon": ("site", X[:, 0]), "lat": ("site", X[:, 1])})
    return X, y, da


def _dense(model, X, y, Xs):
    """The exact GP on the model's unit-box inputs and standardised values; moments back in
    data units."""
    loc, scale = float(model.y_loc), float(model.y_scale)
    y = (y - loc) / scale
    kernel, c = model.kernel, float(model.mean_constant.detach())
    noise = float(model.likelihood.noise.detach())
    with torch.no_grad():
        A, B = torch.as_tensor(model._unit(X)), torch.as_tensor(model._unit(Xs))
        k0 = float(kernel(A[:1], A[:1]).to_dense())
        K = kernel(A, A).to_dense().numpy() + model.nugget * k0 * np.eye(len(X))
        Ks = kernel(B, A).to_dense().numpy()
        kss = np.diag(kernel(B, B).to_dense().numpy()) + model.nugget * k0
    C = K + noise * np.eye(len(X))
    mean = c + Ks @ np.linalg.solve(C, y - c)
    var = kss - np.einsum("ij,ji->i", Ks, np.linalg.solve(C, Ks.T))
    lml = -0.5 * ((y - c) @ np.linalg.solve(C, y - c) + np.linalg.slogdet(C)[1]
                  + len(y) * np.log(2 * np.pi))  # fmt: skip
    return loc + scale * mean, scale**2 * var, lml


def test_full_pattern_equals_the_exact_gp():
    X, y, da = _points()
    model = wb.SparseInverseCholeskyGP(rho=1e6, n_neighbors=1000).fit(da, epochs=0)
    Xs = np.random.default_rng(1).uniform(size=(9, 2))
    post = model.posterior(Xs)
    mean, var, lml = _dense(model, X, y, Xs)
    np.testing.assert_allclose(post["mean"].values, mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(post["variance"].values, var, rtol=0, atol=1e-8)
    assert abs(model.elbo() - lml) < 1e-8 * abs(lml)


def test_prediction_in_small_pieces_equals_one_block():
    from workbench.models.sic_state import predictive_variance

    _, _, da = _points(n=300, seed=4)
    model = wb.SparseInverseCholeskyGP(rho=2.0, n_neighbors=12).fit(da, epochs=0)
    near = torch.as_tensor(np.sort(np.random.default_rng(5).choice(300, (40, 12)), 1))
    near = torch.as_tensor(np.stack([np.unique(r)[:8] for r in near.numpy()]))
    u_c = torch.as_tensor(np.random.default_rng(6).normal(size=near.shape))
    V = model._variational().detach()
    whole = predictive_variance(model.data, near, u_c, V)
    pieces = predictive_variance(model.data, near, u_c, V, budget=1)
    torch.testing.assert_close(pieces, whole, rtol=1e-12, atol=0)
    assert bool((whole > 1).all())


def test_hyperparameter_learning_raises_the_elbo_and_sparse_is_close_to_exact():
    X, y, da = _points(n=400, seed=2)
    model = wb.SparseInverseCholeskyGP(rho=3.0).fit(da, epochs=3, batch_size=64)
    assert model.elbo_trace[-1] > model.elbo_trace[0]
    Xs = np.random.default_rng(3).uniform(size=(50, 2))
    post = model.posterior(Xs)
    mean, var, _ = _dense(model, X, y, Xs)  # the exact GP at the learned hyper-parameters
    assert np.sqrt(np.mean((post["mean"].values - mean) ** 2)) < 0.1 * np.std(mean)
    assert np.median(np.abs(post["variance"].values / var - 1)) < 0.2


def test_gridded_data_with_nan_cells_is_predicted_back_on_the_grid():
    rng = np.random.default_rng(4)
    lat, lon = np.linspace(0, 1, 12), np.linspace(0, 2, 20)
    field = np.sin(3 * lat)[:, None] + np.cos(2 * lon)[None, :]
    values = field + 0.05 * rng.normal(size=field.shape)
    values[rng.uniform(size=field.shape) < 0.3] = np.nan
    da = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="z")
    model = wb.SparseInverseCholeskyGP(rho=2.5).fit(da, epochs=2)
    post = model.posterior()
    assert post["mean"].dims == ("lat", "lon") and np.isfinite(post["mean"]).all()
    hidden = np.isnan(values)
    assert np.sqrt(np.mean((post["mean"].values[hidden] - field[hidden]) ** 2)) < 0.1


@pytest.mark.parametrize("likelihood", ["poisson", "bernoulli", "student_t"])
def test_non_gaussian_likelihoods_run_through_laplace_and_training(likelihood):
    rng = np.random.default_rng(5)
    X = rng.uniform(size=(200, 2))
    f = np.sin(5 * X[:, 0]) + X[:, 1]
    y = {
        "poisson": rng.poisson(np.exp(f)).astype(float),
        "bernoulli": (rng.uniform(size=200) < 1 / (1 + np.exp(-2 * f))).astype(float),
        "student_t": f + 0.2 * rng.standard_t(3, size=200),
    }[likelihood]
    da = xr.DataArray(y, dims="p", coords={"x0": ("p", X[:, 0]), "x1": ("p", X[:, 1])})
    model = wb.SparseInverseCholeskyGP(likelihood=likelihood, rho=2.0)
    model.fit(da, epochs=1, variational_epochs=1)
    post = model.posterior()
    assert post["mean"].dims == ("p",) and np.isfinite(post["variance"]).all()
    assert np.corrcoef(post["mean"].values, f)[0, 1] > 0.7


def test_bad_input_and_duplicates():
    X, _, da = _points(n=40)
    bad = da.assign_coords(lon=("site", np.r_[np.nan, X[1:, 0]]))
    with pytest.raises(CoordinateError, match="finite"):
        wb.SparseInverseCholeskyGP().fit(bad, epochs=0)
    with pytest.raises(EmptyDataError):
        wb.SparseInverseCholeskyGP().fit(da * np.nan, epochs=0)
    with pytest.raises(ValueError, match="rho"):
        wb.SparseInverseCholeskyGP(rho=0)
    twice = xr.concat([da, da + 0.01], "site")  # every input duplicated: the nugget copes
    post = wb.SparseInverseCholeskyGP(n_neighbors=100).fit(twice, epochs=1).posterior()
    assert np.isfinite(post["mean"]).all() and post.sizes["site"] == 80


def test_diagonal_variant_and_saving_the_hyperparameters(tmp_path):
    X, _, da = _points(n=300, seed=6)
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=2))
    full = wb.SparseInverseCholeskyGP(kernel, "student_t", rho=3.0).fit(da, epochs=0)
    diag = wb.SparseInverseCholeskyGP(kernel, "student_t", rho=3.0, diagonal=True)
    diag.fit(da, epochs=0)
    assert diag.elbo() < full.elbo()  # mean-field q loses the posterior correlations
    full.save(tmp_path / "m.wbm")
    again = wb.load(tmp_path / "m.wbm")
    assert again.hyperparameters() == full.hyperparameters()
    refit = again.fit(da, epochs=0).posterior(X[:5])
    np.testing.assert_allclose(refit["mean"], full.posterior(X[:5])["mean"], atol=1e-10)


def test_outputs_are_labelled():
    _, _, da = _points(n=60)
    post = wb.SparseInverseCholeskyGP().fit(da.assign_attrs(units="mm"), epochs=0).posterior()
    assert post["mean"].attrs["units"] == "mm" and post["variance"].attrs["units"] == "(mm)^2"
    assert post.attrs["model"] == "SparseInverseCholeskyGP" and "lon" in post.coords
