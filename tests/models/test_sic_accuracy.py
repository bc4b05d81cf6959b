"""Accuracy at equal sparsity m: KL(q || exact posterior) of the sparse inverse Cholesky q
against GPyTorch's VNNGP with k = m neighbours and SVGP with m inducing points (2-D Matérn-1.5
data, hyper-parameters at the truth for every method, dense float64 KL)."""

from __future__ import annotations

import gpytorch
import numpy as np
import torch

from workbench.linalg import maximin_pattern
from workbench.linalg.factor import kl_factor, padded_pattern, solve_upper, to_dense
from workbench.linalg.ic0 import ic0_posterior

N, ELL, NOISE, NUGGET = 1000, 0.1, 0.01, 1e-4


def _kl(mq, Sq, mp, Sp) -> float:
    n = len(mq)
    Lp = np.linalg.cholesky(Sp)
    inv = np.linalg.inv(Sp)
    d = mp - mq
    logdet_p = 2 * np.log(np.diag(Lp)).sum()
    return 0.5 * (np.sum(inv * Sq) + d @ inv @ d - n + logdet_p - np.linalg.slogdet(Sq)[1])


def _problem():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(N, 2))
    kernel = gpytorch.kernels.MaternKernel(nu=1.5).double()
    kernel.lengthscale = ELL
    with torch.no_grad():
        K = kernel(torch.as_tensor(X)).to_dense().numpy() + NUGGET * np.eye(N)
    f = np.linalg.cholesky(K) @ rng.normal(size=N)
    y = f + np.sqrt(NOISE) * rng.normal(size=N)
    post_cov = np.linalg.inv(np.linalg.inv(K) + np.eye(N) / NOISE)
    return X, y, K, kernel, post_cov @ y / NOISE, post_cov


def _ours(X, y, kernel, rho):
    pattern = maximin_pattern(X / ELL, rho)
    index = padded_pattern(pattern.indptr, pattern.indices)
    Xo = torch.as_tensor(X[pattern.order])
    with torch.no_grad():
        U = kl_factor(lambda a, b: kernel(a, b).to_dense(), Xo, torch.as_tensor(index), NUGGET)
    V = ic0_posterior(index, U.numpy(), np.full(N, 1 / NOISE))  # the Vecchia-Laplace q
    b = y[pattern.order] / NOISE
    Vd = to_dense(index, V)
    nu = np.linalg.solve(Vd.T, solve_upper(index, V, b))  # (V V^T)^{-1} b
    cov = np.linalg.inv(Vd @ Vd.T)
    back = np.argsort(pattern.order)  # to the data's order
    m = float((index >= 0).sum(1).mean())
    return nu[back], cov[np.ix_(back, back)], m


def _svgp_optimal(X, y, K, M):
    """Titsias-optimal q(u) at M random training inputs, and the q(f) it implies."""
    pick = np.random.default_rng(1).choice(N, M, replace=False)
    Kuu, Kuf = K[np.ix_(pick, pick)], K[pick]
    inner = np.linalg.inv(Kuu + Kuf @ Kuf.T / NOISE)
    m_u = Kuu @ inner @ Kuf @ y / NOISE
    S_u = Kuu @ inner @ Kuu
    A = np.linalg.solve(Kuu, Kuf).T
    cov = K - A @ Kuf + A @ S_u @ A.T
    return A @ m_u, cov + 1e-10 * np.eye(N)


def _vnngp(X, y, kernel_truth, k, epochs=150):
    torch.manual_seed(0)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    class Model(gpytorch.models.ApproximateGP):
        def __init__(self):
            q = gpytorch.variational.MeanFieldVariationalDistribution(N)
            strategy = gpytorch.variational.NNVariationalStrategy(
                self, Xt.clone(), q, k=k, training_batch_size=128
            )
            super().__init__(strategy)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = gpytorch.kernels.MaternKernel(nu=1.5)

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), self.covar_module(x)
            )

        def __call__(self, x, prior=False, **kwargs):
            return self.variational_strategy(x=x, prior=False, **kwargs)

    model = Model().double()
    model.covar_module.lengthscale = ELL
    model.covar_module.raw_lengthscale.requires_grad_(False)
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    likelihood.noise = NOISE
    likelihood.raw_noise.requires_grad_(False)
    mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=N)
    opt = torch.optim.Adam(model.variational_strategy._variational_distribution.parameters(), 0.01)
    steps = model.variational_strategy._total_training_batches
    model.train()
    for _ in range(epochs * steps):
        opt.zero_grad()
        output = model(x=None)
        idx = model.variational_strategy.current_training_indices
        (-mll(output, yt[idx])).backward()
        opt.step()
    q = model.variational_strategy._variational_distribution
    mean = q.variational_mean.detach().numpy()
    var = q.variational_stddev.detach().numpy() ** 2
    return mean, np.diag(var)


def test_sparse_inverse_cholesky_q_beats_vnngp_and_svgp_at_equal_m():
    # equal sparsity: a column of ours conditions on m - 1 earlier points on average (the
    # diagonal is the m-th entry); VNNGP conditions each point on k neighbours
    X, y, K, kernel, post_mean, post_cov = _problem()
    nu, cov, m = _ours(X, y, kernel, rho=2.2)
    ours = _kl(nu, cov, post_mean, post_cov)
    k = round(m - 1)
    svgp = _kl(*_svgp_optimal(X, y, K, round(m)), post_mean, post_cov)
    vnngp = _kl(*_vnngp(X, y, kernel, k), post_mean, post_cov)
    print(f"m = {m:.2f}: KL ours {ours:.0f}, VNNGP (k = {k}) {vnngp:.0f}, SVGP {svgp:.0f}")
    assert k == 4 and ours <= vnngp, (ours, vnngp)
    assert ours < 0.01 * svgp, (ours, svgp)
