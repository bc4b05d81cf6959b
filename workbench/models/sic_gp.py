"""Variational sparse inverse Cholesky GP (DKLGP): latent GPs on large spatial / tabular data."""

from __future__ import annotations

from typing import Any, Self

import gpytorch
import numpy as np
import torch
import xarray as xr
from scipy.spatial import cKDTree

from workbench.data.spatial import spatial_data
from workbench.errors import check_positive
from workbench.inference.dkl import column_terms, elbo_from_terms
from workbench.kernels import kernel_from_spec, kernel_to_spec
from workbench.likelihoods import (
    Gaussian,
    Likelihood,
    likelihood_from_spec,
    likelihood_to_spec,
    make_likelihood,
)
from workbench.linalg.factor import kl_factor, solve_upper, solve_upper_transposed
from workbench.linalg.ic0 import ic0_robust
from workbench.models.base import Model
from workbench.models.divergence import DivergenceGuard, check_finite
from workbench.models.sic_fit_state import SparseFitStateMixin
from workbench.models.sic_outputs import SparseOutputsMixin
from workbench.models.sic_state import (
    OrderedData,
    order_data,
    predictive_variance,
    prior_apply,
    prior_apply_transposed,
)
from workbench.progress import progress_bar

__all__ = ["ADVICE", "SparseInverseCholeskyGP"]

#: What to try when the fit keeps diverging (the end of ``FitDivergedError``).
ADVICE = (
    "Try a smaller lr or variational_lr, a larger nugget, rescaling the inputs, or initial "
    "hyper-parameters closer to the data's scales"
)


class SparseInverseCholeskyGP(SparseOutputsMixin, SparseFitStateMixin, Model):
    r"""Latent GP :math:`f \sim GP(c, k)`, :math:`y_i \mid f \sim p(y_i \mid f(x_i))`, with
    the double-KL variational approximation of Cao, Kang, Jimenez, Sang, Schäfer and Katzfuss
    (ICML 2023).

    The prior is replaced by its KL-optimal sparse inverse Cholesky approximation
    :math:`\hat p = N(c, (\hat U\hat U^\top)^{-1})` on the maximin order of the inputs (scaled
    by the kernel's lengthscales) with the :math:`\rho`-neighbourhood pattern; the variational
    posterior is :math:`q = N(\nu, (VV^\top)^{-1})` with V on the same pattern (``diagonal=True``:
    V diagonal, the "DKL-D" variant). It starts at the Vecchia–Laplace posterior (Newton
    iterations with the IC0 factor of the posterior precision, exact for a Gaussian likelihood
    and the full pattern) and is refined, with the hyper-parameters, by Adam on the minibatch
    ELBO (:mod:`workbench.inference.dkl`). Inside, inputs are mapped to the unit box (one
    scale for all dims) and real-valued data are standardised, so the kernel's lengthscales and
    variance, the noise and :attr:`elbo_trace` refer to those units; predictions are in the
    data's units.

    Parameters
    ----------
    kernel : gpytorch Kernel, optional
        Covariance (default ``ScaleKernel(MaternKernel(nu=1.5))``).
    likelihood : str or Likelihood
        "gaussian", "poisson", "bernoulli", "negative_binomial", "student_t" or an object.
    rho : float
        Pattern radius: column j conditions on the earlier points within :math:`\rho\,\ell_j`.
    n_neighbors : int
        Training points each prediction input conditions on.
    nugget : float
        Added to the prior variance (relative to the kernel's variance at zero lag); it also
        makes duplicated inputs harmless.
    inputs : list of str, optional
        Coordinate names of the inputs for 1-D (points) data.
    """

    def __init__(
        self,
        kernel: gpytorch.kernels.Kernel | dict | None = None,
        likelihood: str | Likelihood | dict = "gaussian",
        rho: float = 2.0,
        *,
        diagonal: bool = False,
        n_neighbors: int = 30,
        nugget: float = 1e-6,
        inputs: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        rho, nugget = check_positive("rho", rho), check_positive("nugget", nugget, allow_zero=True)
        if int(n_neighbors) != n_neighbors or n_neighbors < 1:
            raise ValueError(f"expected n_neighbors >= 1, got {n_neighbors}")
        if isinstance(kernel, dict):
            kernel = kernel_from_spec(kernel)
        if isinstance(likelihood, dict):
            likelihood = likelihood_from_spec(likelihood)
        default = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=1.5))
        self.kernel = (kernel if kernel is not None else default).double()
        self.likelihood = make_likelihood(likelihood).double()
        self._checked([self.kernel], "kernel")
        self._checked([self.likelihood], "likelihood")
        self.rho, self.diagonal, self.n_neighbors = float(rho), bool(diagonal), int(n_neighbors)
        self.nugget, self.inputs, self.seed = float(nugget), inputs, seed
        self.mean_constant = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        # real-valued data are standardised inside (Adam steps on softplus-constrained variances
        # are additive, so variances in data units of 10^4 would barely move)
        self.register_buffer("y_loc", torch.zeros((), dtype=torch.float64))
        self.register_buffer("y_scale", torch.ones((), dtype=torch.float64))
        # inputs are mapped to the unit box (one scale for all dims, so distances keep their
        # shape): lengthscales then live on an O(1) scale, for the same reason
        self.register_buffer("x_loc", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("x_scale", torch.ones((), dtype=torch.float64))
        self._register_load_state_dict_pre_hook(self._resize_inputs)
        self.data: OrderedData | None = None
        self.elbo_trace: list[float] = []

    def get_config(self) -> dict[str, Any]:
        return {
            "kernel": kernel_to_spec(self.kernel),
            "likelihood": likelihood_to_spec(self.likelihood),
            "rho": self.rho,
            "diagonal": self.diagonal,
            "n_neighbors": self.n_neighbors,
            "nugget": self.nugget,
            "inputs": self.inputs,
            "seed": self.seed,
        }

    def _resize_inputs(self, state_dict, prefix, *args) -> None:
        if prefix + "x_loc" in state_dict:
            self.x_loc = torch.empty_like(state_dict[prefix + "x_loc"], device=self.device)

    def _unit(self, X: np.ndarray) -> np.ndarray:
        """Inputs in the unit-box coordinates the kernel works in."""
        return (np.asarray(X, np.float64) - self.x_loc.cpu().numpy()) / float(self.x_scale)

    # -- pieces --------------------------------------------------------------------------------
    def _lengthscale(self, d: int) -> np.ndarray:
        for module in self.kernel.modules():
            if getattr(module, "has_lengthscale", False):
                value = module.lengthscale.detach().reshape(-1).cpu().numpy()
                return np.broadcast_to(value, (d,)).copy()
        return np.ones(d)

    def _covariance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.kernel(a, b).to_dense()

    def _prior_columns(self, X: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        zero = X[:1]
        scale = float(self._covariance(zero, zero).detach())
        return kl_factor(self._covariance, X, index, self.nugget * scale)

    def _variational(self) -> torch.Tensor:
        """V's values (n, m): exp of the diagonal slot, masked to the pattern."""
        diag = torch.exp(self.raw_v[:, -1:])
        off = torch.where(self.data.index[:, :-1] >= 0, self.raw_v[:, :-1], 0.0)
        if self.diagonal:
            off = torch.zeros_like(off)
        return torch.cat([off, diag], 1)

    def _derivatives(self, y: torch.Tensor, f: torch.Tensor):
        """Gradient and curvature (clamped non-negative) of log p(y | f), elementwise."""
        f = f.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self.likelihood.log_prob(y, f).sum()
            grad = torch.autograd.grad(value, f, create_graph=True)[0]
            hess = torch.autograd.grad(grad.sum(), f)[0]
        return grad.detach(), (-hess.detach()).clamp_min(1e-10)

    def _laplace(self, steps: int = 20) -> None:
        """Newton iterations for the mode of log p(y | f) + log p̂(f), IC0 factor of the
        posterior precision; sets nu and V."""
        data = self.data
        with torch.no_grad():
            U = self._prior_columns(data.X, data.index)
            mu = self.mean_constant.detach().expand(data.y.shape[0])
            prior_mu = prior_apply(data.index, U, prior_apply_transposed(data.index, U, mu))
        # the compiled IC0 and triangular solves run on the CPU, wherever the model lives
        idx, Un = data.index.cpu().numpy(), U.cpu().numpy()

        def objective(f):
            with torch.no_grad():
                resid = prior_apply_transposed(data.index, U, f - mu)
                fit = self.likelihood.log_prob(data.y, f).sum()
                return float(fit - 0.5 * resid.square().sum())

        f = mu.clone()
        for _ in range(steps):
            grad, W = self._derivatives(data.y, f)
            V = ic0_robust(idx, Un, W.cpu().numpy())
            b = (W * f + grad + prior_mu).cpu().numpy()
            new = torch.as_tensor(solve_upper_transposed(idx, V, solve_upper(idx, V, b))).to(f)
            step, base = 1.0, objective(f)
            while objective(f + step * (new - f)) < base and step > 1e-4:
                step *= 0.5
            change = step * (new - f)
            f = f + change
            size = float(f.square().mean().sqrt())
            if float(change.square().mean().sqrt()) < 1e-10 * (1 + size):
                break
        _, W = self._derivatives(data.y, f)
        if self.diagonal:  # the best diagonal V: V_jj^2 = P_jj (mean-field q)
            squares = torch.where(data.index >= 0, U.square(), 0.0).reshape(-1)
            rows = data.index.clamp_min(0).reshape(-1)
            P_diag = torch.zeros_like(W).index_add(0, rows, squares) + W
            raw = torch.zeros_like(U)
            raw[:, -1] = 0.5 * P_diag.log()
        else:
            V = torch.as_tensor(ic0_robust(idx, Un, W.cpu().numpy())).to(U)
            raw = torch.where(data.index >= 0, V, 0.0)
            raw[:, -1] = V[:, -1].log()
        # q's parameters are plain leaf tensors, not module parameters: they are sized by the
        # data, so saved models keep the hyper-parameters and refit q
        self.nu = f.detach().clone().requires_grad_(True)
        self.raw_v = raw.requires_grad_(True)

    def _elbo(self, batch: torch.Tensor) -> torch.Tensor:
        data, batch, n = self.data, batch.to(self.y_loc.device), self.data.y.shape[0]
        prior = data.X.new_zeros(n, data.index.shape[1])
        prior = prior.index_put((batch,), self._prior_columns(data.X, data.index[batch]))
        mu = self.mean_constant.expand(n)
        terms = column_terms(batch, data.ancestors, data.index, prior, self._variational(),
                             self.nu, mu)  # fmt: skip
        expected = self.likelihood.expected_log_prob_value(
            data.y[batch], self.nu[batch], terms.variance
        )
        return elbo_from_terms(terms, expected, n)

    def elbo(self, batch_size: int = 1024) -> float:
        """The ELBO summed over every column (in batches)."""
        n = self.data.y.shape[0]
        with torch.no_grad():
            batches = torch.arange(n).split(batch_size)
            return sum(float(self._elbo(b)) * b.shape[0] / n for b in batches)

    # -- public API ----------------------------------------------------------------------------
    def fit(
        self,
        da: xr.DataArray,
        *,
        epochs: int = 10,
        variational_epochs: int = 0,
        batch_size: int = 128,
        lr: float = 0.05,
        variational_lr: float = 1e-3,
        progress: bool | None = None,
        callback: Any = None,
    ) -> Self:
        """Order the inputs, build the pattern and start q at the Vecchia–Laplace posterior
        (the first fit starts the lengthscale at ten median nearest-neighbour spacings, at most
        a tenth of the inputs' span);
        then ``epochs`` rounds of hyper-parameter learning, each an epoch of Adam on the
        minibatch ELBO (scaled by n/|B|) with q fixed, followed by a re-ordering with the new
        lengthscales and a fresh Vecchia–Laplace q (Adam steps on q itself wreck a good start);
        finally ``variational_epochs`` epochs of Adam on q (non-Gaussian likelihoods).
        ``elbo_trace`` records the full ELBO after every round; ``callback(step, -elbo)``
        follows each.
        """
        points = spatial_data(da, self.inputs, support=self.likelihood.support)
        self._template, self._points = da, points
        n = points.X.shape[0]
        if self.data is None:
            self._initialize(points.X, points.y)
        self.elbo_trace = []
        self.rebuild()
        hyper = [*self.kernel.parameters(), *self.likelihood.parameters(), self.mean_constant]
        gen, opt = torch.Generator().manual_seed(self.seed), None
        guard = DivergenceGuard(self, unit="epoch", advice=ADVICE, save=self._save_q,
                                load=self._load_q)  # fmt: skip
        with progress_bar(epochs + variational_epochs, type(self).__name__, progress) as bar:
            for step in range(epochs + variational_epochs):
                with guard.attempt(step) as attempt:  # rolled back with q if it diverges
                    if step < epochs:
                        adam = torch.optim.Adam(hyper, lr=lr * guard.scale)
                        self._epoch(adam, n, batch_size, gen)
                        guard.check()  # a diverged lengthscale must not reach the re-ordering
                        self.rebuild()
                    else:
                        q = [self.nu, self.raw_v]
                        opt = opt or torch.optim.Adam(q, lr=variational_lr * guard.scale)
                        self._epoch(opt, n, batch_size, gen)
                    value = self.elbo()
                    check_finite(value, "the ELBO")
                if not attempt.ok:
                    opt = None
                    continue
                self.elbo_trace.append(value)
                bar.update(1)
                if callback is not None:
                    callback(step, -self.elbo_trace[-1])
        return self

    def explore(self, data: xr.DataArray, *, fit_steps: int = 3) -> Any:
        """An ipywidgets explorer: rho and kernel sliders, maps of the data, posterior mean and
        sd, the ELBO (see :class:`workbench.widgets.SparseGPExplorer`)."""
        from workbench.widgets import SparseGPExplorer

        return SparseGPExplorer(self, data, fit_steps=fit_steps)

    def rebuild(self) -> None:
        """Re-order, rebuild the pattern and restart q at the Vecchia–Laplace posterior with
        the current hyper-parameters and ``rho`` (after setting either by hand)."""
        self._order(self._lengthscale(self._points.X.shape[1]))
        self._laplace()

    def _order(self, lengthscale: np.ndarray) -> None:
        X = self._unit(self._points.X)
        y = (self._points.y - float(self.y_loc)) / float(self.y_scale)
        self.data = order_data(X, y, lengthscale, self.rho, self.y_loc.device)
        self._ordered_by = lengthscale  # saved: the order is rebuilt from it on load

    def _epoch(self, opt: torch.optim.Optimizer, n: int, batch_size: int, gen) -> None:
        for batch in torch.randperm(n, generator=gen).split(batch_size):
            opt.zero_grad()
            loss = -self._elbo(batch) / n
            check_finite(loss.detach(), "the minibatch ELBO")
            loss.backward()
            opt.step()

    def _initialize(self, X: np.ndarray, y: np.ndarray) -> None:
        with torch.no_grad():
            if self.likelihood.support == "real":
                self.y_loc.fill_(float(np.mean(y)))
                self.y_scale.fill_(float(np.std(y)) or 1.0)
                y = (y - float(self.y_loc)) / float(self.y_scale)
            self.x_loc = torch.as_tensor(X.min(0), dtype=torch.float64, device=self.y_loc.device)
            self.x_scale.fill_(float(np.ptp(X, 0).max()) or 1.0)
            X = self._unit(X)
            span = float(np.linalg.norm(X.max(0) - X.min(0))) or 1.0
            spacing = float(np.median(cKDTree(X).query(X, k=2)[0][:, 1]))
            # (near-)duplicated inputs: a spacing of ~0 would give a zero lengthscale
            length = min(0.1 * span, 10 * spacing) if spacing > 1e-7 * span else 0.1 * span
            var = float(np.var(y)) or 1.0
            for module in self.kernel.modules():
                if getattr(module, "has_lengthscale", False):
                    module.lengthscale = length
                if isinstance(module, gpytorch.kernels.ScaleKernel):
                    module.outputscale = var
            if isinstance(self.likelihood, Gaussian):
                self.likelihood.raw_noise.copy_(
                    self.likelihood.raw_noise_constraint.inverse_transform(
                        torch.tensor(0.1 * var, dtype=self.likelihood.raw_noise.dtype)
                    )
                )
            guess = self.likelihood.latent_guess(torch.as_tensor(y, device=self.y_loc.device))
            self.mean_constant.copy_(guess)

    def predict_latent(self, X_new: np.ndarray, batch_size: int = 4096):
        """Latent mean and variance (s,) at inputs (s, d): each conditions on its
        ``n_neighbors`` nearest training points (a KL-optimal column placed after the training
        set); variances from solves with V over the union of their ancestor sets."""
        data = self.data
        n = data.y.shape[0]
        k = min(self.n_neighbors, n)
        tree = cKDTree(data.scaled)
        X_new = self._unit(X_new)
        _, near = tree.query(X_new / self._lengthscale(data.X.shape[1]), k=k)
        near = np.sort(np.asarray(near).reshape(len(X_new), k), axis=1)
        means, variances = [], []
        with torch.no_grad():
            V = self._variational()
            mu = self.mean_constant
            X_all = torch.cat([data.X, torch.as_tensor(np.asarray(X_new, np.float64)).to(data.X)])
            for rows in torch.arange(len(X_new)).split(batch_size):
                c = torch.as_tensor(near[rows.numpy()], device=data.X.device)
                rows = rows.to(data.X.device)
                index = torch.cat([c, (n + rows)[:, None]], 1)
                cols = self._prior_columns(X_all, index)  # (b, k + 1), self last
                u_c, u_t = cols[:, :-1], cols[:, -1]
                means.append(mu - (u_c * (self.nu[c] - mu)).sum(1) / u_t)
                variances.append(predictive_variance(data, c, u_c, V) / u_t.square())
        return torch.cat(means), torch.cat(variances)
