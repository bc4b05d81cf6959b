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

from workbench.models.rng import forked_rng

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


class _Scaled:
    """Inputs mapped to the unit box and outputs standardised, as the peers expect."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.lo, self.span = X.min(0), np.ptp(X, 0) + 1e-12
        self.mu, self.sd = y.mean(), y.std() + 1e-12
        self.X = torch.as_tensor(self.inputs(X))
        self.y = torch.as_tensor((y - self.mu) / self.sd)

    def inputs(self, X: np.ndarray) -> np.ndarray:
        return (X - self.lo) / self.span


def _train(model, data: _Scaled, epochs: int, lr: float, batches):
    """Adam on the variational ELBO; ``batches()`` yields (model output, targets) per step.
    Returns ``predict`` (mean and variance of y at new inputs) and the training seconds."""
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=len(data.y))
    opt = torch.optim.Adam([*model.parameters(), *likelihood.parameters()], lr=lr)
    start = time.perf_counter()
    model.train()
    likelihood.train()
    for _ in range(epochs):
        for output, target in batches(model):
            opt.zero_grad()
            (-mll(output, target)).backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    likelihood.eval()

    def predict(X_new):
        means, variances = [], []
        with torch.no_grad():
            for chunk in torch.as_tensor(data.inputs(X_new)).split(4096):
                pred = likelihood(model(chunk))
                means.append(pred.mean.numpy() * data.sd + data.mu)
                variances.append(pred.variance.numpy() * data.sd**2)
        return np.concatenate(means), np.concatenate(variances)

    return predict, seconds


def fit_svgp(X, y, n_inducing: int = 500, epochs: int = 10, lr: float = 0.01, seed: int = 0):
    """Fit SVGP; returns ``predict(X_new) -> (mean, variance of y)`` and the fit seconds.

    Inducing points, initial values and minibatches are drawn from torch's RNG seeded with
    ``seed`` inside a fork: the caller's global RNG state is left as it was."""
    with forked_rng():
        torch.manual_seed(seed)
        data = _Scaled(X, y)
        model = _SVGP(data.X[torch.randperm(len(data.X))[:n_inducing]].clone()).double()

        def batches(model):
            for batch in torch.randperm(len(data.y)).split(256):
                yield model(data.X[batch]), data.y[batch]

        return _train(model, data, epochs, lr, batches)


def fit_vnngp(X, y, k: int = 32, epochs: int = 10, lr: float = 0.01, seed: int = 0):
    """Fit VNNGP (every training input an inducing point, k neighbours); as :func:`fit_svgp`
    (seeded the same way, the caller's RNG untouched)."""
    with forked_rng():
        torch.manual_seed(seed)
        data = _Scaled(X, y)
        model = _VNNGP(data.X.clone(), k=k, batch=256).double()
        strategy = model.variational_strategy

        def batches(model):  # the strategy draws each minibatch of inducing points itself
            for _ in range(strategy._total_training_batches):
                output = model(x=None)
                yield output, data.y[strategy.current_training_indices]

        return _train(model, data, epochs, lr, batches)


def gaussian_scores(mean, variance, y) -> tuple[float, float]:
    """RMSE and the Gaussian negative log predictive density (with 1/2 log 2 pi), averaged."""
    rmse = float(np.sqrt(np.mean((mean - y) ** 2)))
    nll = float(np.mean(0.5 * np.log(2 * math.pi * variance) + (y - mean) ** 2 / (2 * variance)))
    return rmse, nll
