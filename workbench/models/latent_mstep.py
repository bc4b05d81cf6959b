r"""M-step of :class:`LatentTrajectoryGP`: readout (C, d) and the latents' kernel hyper-parameters.

Kernel hyper-parameters maximise :math:`E_q\log p_\theta(x)`-type objectives:

* ``"whittle"`` (regular bins): per latent, the debiased Whittle likelihood of the expected
  periodogram :math:`E_q I_k = I_k(m) + \frac{\Delta}{T}\sum_{t,t'}\mathrm{Cov}_q(x_t,
  x_{t'})e^{-i\omega_k(t-t')\Delta}`, summed over trials. The covariance term is taken as
  :math:`\bar v\,\bar I_k(\theta_{\text{old}})`: the posterior variance (mean
  :math:`\bar v`) with the current prior's correlation (averaging periodograms of exact draws
  of q gave the same lengthscales at the cost of extra smoothing passes). The latent's scale is
  profiled out (:math:`\sigma^2 = \overline{I/\bar I}`): it lives in C, and with the
  unit-variance prior fixed, a latent whose posterior power is off during EM would drag the
  lengthscale to zero. One FFT per latent and trial, then O(T log T) per evaluation.
* ``"marginal"``: the sites as pseudo-data, :math:`\log Z_\theta = \log\int p_\theta(x)
  \prod_t\tilde t_t(x_t)\,dx`, whose gradient equals the ELBO's at a CVI fixed point (exact,
  O(T S³) per evaluation; the joint version runs the torch site filter on the stacked state).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import torch

from workbench.inference import Sites
from workbench.inference.whittle import expected_periodogram, periodogram, whittle_log_likelihood
from workbench.models.latent_estep import LatentState, stack_state_space
from workbench.models.training import optimize, require_progress
from workbench.models.trials import PackedTrials
from workbench.ssm.site_filter import site_filter

__all__ = ["kernel_objectives", "mstep", "readout_loss"]

Loss = Callable[[], torch.Tensor]


def readout_loss(likelihood, y, mask, state: LatentState, C, d, n: int) -> Loss:
    """Negative expected log-likelihood per observed value, as a function of (C, d)."""

    def loss() -> torch.Tensor:
        mu, s2 = state.eta_moments(C, d)
        value = likelihood.expected_log_prob_value(y, mu, s2)
        return -torch.where(mask, value, 0.0).sum() / n

    return loss


def _whittle(latent, power_by_length: dict[int, torch.Tensor], dt: float, n: int) -> Loss:
    """Scale-profiled Whittle loss: the latent's scale lives in C, so only the spectral shape
    fits θ (σ² = mean(I / Ī) maximises the likelihood of σ²Ī)."""
    count = sum(p.numel() for p in power_by_length.values())

    def loss() -> torch.Tensor:
        shape = {T: _prior_periodogram(latent, T, dt) for T in power_by_length}
        ratio = sum((p / shape[T]).sum() for T, p in power_by_length.items()) / count
        total = 0.0
        for length, power in power_by_length.items():
            total = total - whittle_log_likelihood(power, ratio * shape[length]).sum()
        return total / n

    return loss


def _prior_periodogram(latent, length: int, dt: float) -> torch.Tensor:
    lags = dt * torch.arange(length, dtype=torch.float64, device=latent.device)[:, None]
    return expected_periodogram(latent.kernel(lags, lags[:1]).to_dense()[..., 0], dt)


def _expected_power(latent, state: LatentState, packed: PackedTrials, k: int, dt: float):
    """E_q periodograms of latent k grouped by trial length (trials shorter than 4 bins skip)."""
    groups: dict[int, list[torch.Tensor]] = defaultdict(list)
    prior: dict[int, torch.Tensor] = {}
    for seg in packed.segments():
        mean, var = state.mean[0, k, seg], state.var[0, k, seg]
        T = mean.shape[0]
        if T >= 4:
            if T not in prior:
                prior[T] = _prior_periodogram(latent, T, dt)
            groups[T].append(periodogram(mean, dt) + var.mean() * prior[T])
    return {T: torch.stack(p) for T, p in groups.items()}


def kernel_objectives(
    latents: Sequence,
    packed: PackedTrials,
    state: LatentState,
    n: int,
    method: str,
    dt: float | None,
) -> list[tuple[list[torch.nn.Parameter], Loss]]:
    """(parameters, loss) pairs to minimise for the kernel hyper-parameters."""
    x, starts = packed.x, packed.starts
    if method == "whittle":
        with torch.no_grad():
            powers = [_expected_power(m, state, packed, k, dt) for k, m in enumerate(latents)]
        return [
            (_trainable(latent), _whittle(latent, power, dt, n))
            for latent, power in zip(latents, powers, strict=True)
            if power
        ]
    if not state.joint:
        return [
            (
                _trainable(latent),
                latent._pseudo_data_loss(
                    x, Sites(state.info[:, k], state.precision[:, k]), n, starts
                ),
            )
            for k, latent in enumerate(latents)
        ]
    info, precision = state.info.transpose(-1, -2), state.precision

    def joint_loss() -> torch.Tensor:
        A, Q, H, Pinf, index = stack_state_space(latents, x, starts)
        return -site_filter(A, Q, H, info, precision, Pinf, index).log_marginal.sum() / n

    return [([p for latent in latents for p in _trainable(latent)], joint_loss)]


def mstep(model, data, state: LatentState, n: int, method: str, iterations: int, learn: bool,
          scale: float = 1.0) -> None:  # fmt: skip
    """A partial M-step (generalised EM) of a :class:`LatentTrajectoryGP`: ``iterations``
    L-BFGS iterations in one step on (C, d), then (``learn``) on each kernel objective, with
    initial step length ``scale``. Raises ``Divergence`` when one of them failed entirely."""
    if iterations <= 0:
        return
    loss = readout_loss(model.observation, data.y, data.mask, state, model.C, model.d, n)
    groups = [([model.C, model.d], loss)]
    if learn:
        groups += kernel_objectives(model.latents, data.packed, state, n, method, data.dt)
    for params, objective in groups:
        done = optimize(model, objective, steps=1, lr=scale, optimizer="lbfgs", progress=False,
                        params=params, max_iter=iterations)  # fmt: skip
        require_progress(done, 1)


def _trainable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]
