"""GPyTorch baselines for the sparse GP comparisons: SVGP and VNNGP, fitted the usual way.

Used by ``tests/benchmarks/bench_sparse_gp.py`` and notebook 05 so that both run the peers
identically: Matérn-1.5 ``ScaleKernel``, constant mean, Gaussian likelihood, Adam with
minibatches of 256 and the variational ELBO.
"""

from __future__ import annotations

import math
import time

import gpytorch
import numpy as np
import torch

__all__ = ["fit_svgp", "fit_vnngp", "gaussian_scores"]


class _SVGP(gpytorch.models.ApproximateGP):
    def __init__(self, inducing: torch.Tensor):
        q = gpytorch.variational.CholeskyVariationalDistribution(inducing.shape[0])
        strategy = gpytorch.variational.VariationalStrategy(
            self, inducing, q, learn_inducing_locations=True
        )
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=1.5))

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class _VNNGP(gpytorch.models.ApproximateGP):
    def __init__(self, inducing: torch.Tensor, k: int, batch: int):
        q = gpytorch.variational.MeanFieldVariationalDistribution(inducing.shape[0])
        strategy = gpytorch.variational.NNVariationalStrategy(
            self, inducing, q, k=k, training_batch_size=batch
        )
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=1.5))

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    def __call__(self, x, prior=False, **kwargs):  # x=None: the strategy's next minibatch
        if x is not None and x.dim() == 1:
            x = x[:, None]
        return self.variational_strategy(x=x, prior=False, **kwargs)


def _standardise(X, y):
    lo, span = X.min(0), np.ptp(X, 0) + 1e-12
    mu, sd = y.mean(), y.std() + 1e-12
    return lo, span, mu, sd


def fit_svgp(X, y, n_inducing: int = 500, epochs: int = 10, lr: float = 0.01, seed: int = 0):
    """Fit SVGP; returns ``predict(X_new) -> (mean, variance of y)`` and the fit seconds."""
    torch.manual_seed(seed)
    lo, span, mu, sd = _standardise(X, y)
    Xt = torch.as_tensor((X - lo) / span)
    yt = torch.as_tensor((y - mu) / sd)
    pick = torch.randperm(len(Xt))[:n_inducing]
    model = _SVGP(Xt[pick].clone()).double()
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=len(yt))
    opt = torch.optim.Adam([*model.parameters(), *likelihood.parameters()], lr=lr)
    start = time.perf_counter()
    model.train()
    likelihood.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(yt)).split(256):
            opt.zero_grad()
            (-mll(model(Xt[batch]), yt[batch])).backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    likelihood.eval()

    def predict(X_new):
        out_m, out_v = [], []
        with torch.no_grad():
            for chunk in torch.as_tensor((X_new - lo) / span).split(4096):
                pred = likelihood(model(chunk))
                out_m.append(pred.mean.numpy() * sd + mu)
                out_v.append(pred.variance.numpy() * sd**2)
        return np.concatenate(out_m), np.concatenate(out_v)

    return predict, seconds


def fit_vnngp(X, y, k: int = 32, epochs: int = 10, lr: float = 0.01, seed: int = 0):
    """Fit VNNGP (every training input an inducing point, k neighbours); as :func:`fit_svgp`."""
    torch.manual_seed(seed)
    lo, span, mu, sd = _standardise(X, y)
    Xt = torch.as_tensor((X - lo) / span)
    yt = torch.as_tensor((y - mu) / sd)
    model = _VNNGP(Xt.clone(), k=k, batch=256).double()
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=len(yt))
    opt = torch.optim.Adam([*model.parameters(), *likelihood.parameters()], lr=lr)
    start = time.perf_counter()
    model.train()
    likelihood.train()
    steps = model.variational_strategy._total_training_batches
    for _ in range(epochs):
        for _ in range(steps):
            opt.zero_grad()
            output = model(x=None)
            idx = model.variational_strategy.current_training_indices
            (-mll(output, yt[idx])).backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    likelihood.eval()

    def predict(X_new):
        out_m, out_v = [], []
        with torch.no_grad():
            for chunk in torch.as_tensor((X_new - lo) / span).split(4096):
                pred = likelihood(model(chunk))
                out_m.append(pred.mean.numpy() * sd + mu)
                out_v.append(pred.variance.numpy() * sd**2)
        return np.concatenate(out_m), np.concatenate(out_v)

    return predict, seconds


def gaussian_scores(mean, variance, y) -> tuple[float, float]:
    """RMSE and the Gaussian negative log predictive density (with 1/2 log 2 pi), averaged."""
    rmse = float(np.sqrt(np.mean((mean - y) ** 2)))
    nll = float(np.mean(0.5 * np.log(2 * math.pi * variance) + (y - mean) ** 2 / (2 * variance)))
    return rmse, nll
