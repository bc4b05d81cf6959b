r"""Full Bayesian hyper-parameters by NUTS (Pyro) on an exact log marginal likelihood.

The sampler shared by the models (:func:`run_nuts`) takes any differentiable
:math:`\log p(y \mid \theta)`: the O(T) Kalman filter of a :class:`~workbench.models.MarkovGP`
(:mod:`workbench.models.hyper_nuts`), the dense or Kronecker exact likelihood of a
:class:`~workbench.models.MultitaskGP` (:mod:`workbench.models.multitask_nuts`). NUTS samples

.. math::
    p(\theta \mid y) \propto p(\theta)\, p(y \mid \theta)

directly, with the latent function integrated out exactly. Each sampled hyper-parameter
:math:`\theta_i` (a scalar, or elementwise a vector) has a prior on its natural scale (a
torch/Pyro distribution); NUTS (Pyro's, with step-size and diagonal mass-matrix adaptation)
moves on :math:`z_i` with
:math:`\theta_i = b_i(z_i)`, :math:`b_i` = ``biject_to(prior.support)`` (e.g. exp for a LogNormal
prior), i.e. on the potential

.. math::
    U(z) = -\Big[\log p(y \mid \theta) + \sum_i \log p(\theta_i)
           + \log\Big|\frac{d\theta_i}{dz_i}\Big|\Big].

(This is what a Pyro model with ``pyro.sample(name, prior)`` sites and
``pyro.factor("lml", ...)`` compiles to; writing the potential directly halves the per-step
overhead.)

Default priors: :func:`workbench.models.hyper_priors.default_priors`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.errors import ValueRangeError
from workbench.io.arviz import check_num_samples
from workbench.io.attrs import make_attrs
from workbench.models.hyper_priors import describe, inside
from workbench.models.rng import forked_rng
from workbench.progress import progress_bar

__all__ = ["Outputs", "nuts_attrs", "nuts_options", "posterior_group", "run_nuts"]

_INIT_RADIUS = 1.0  # chains start uniformly within ±1 (unconstrained) of the current values

#: ``fn(draws, seed, bar)``: per-draw outputs computed after the chains (bar: one step a draw).
Outputs = Callable[[dict[str, torch.Tensor], int, Any], Any]


class _LogMarginal(torch.nn.Module):
    """``log_marginal()`` (a closure over ``model``), with theta substituted functionally."""

    def __init__(
        self, model: Any, log_marginal: Callable[[], torch.Tensor], names: list[str]
    ) -> None:
        super().__init__()
        self.model, self.log_marginal = model, log_marginal
        path = {id(p): f"model.{k}" for k, p in model.named_parameters()}
        self.raw = {n: (path[id(p)], p, c) for n, p, c in model._constrained() if n in names}
        self.evaluations = 0

    def forward(self) -> torch.Tensor:
        return self.log_marginal()

    def evaluate(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self.evaluations += 1
        params = {}
        for name, value in values.items():
            path, param, constraint = self.raw[name]
            value = value.to(param).reshape(param.shape)
            if constraint is not None:
                # below a floor (noise > 1e-8) the model cannot go: the likelihood stays at the
                # floor's value there, which keeps NUTS's energies finite
                value = constraint.inverse_transform(inside(value, constraint))
            params[path] = value
        return torch.func.functional_call(self, params, ())


def _initial_values(model: Any, priors: Mapping[str, Any], g: torch.Generator) -> dict:
    """Current values jittered uniformly by ±1 on the prior's unconstrained scale."""
    from torch.distributions import biject_to

    current, out = model.hyperparameters(), {}
    for name, prior in priors.items():
        shape = prior.batch_shape
        v = torch.tensor(current[name], dtype=torch.float64).reshape(shape)
        ok = prior.support.check(v)
        if not bool(ok.all()):  # e.g. a user prior excluding the current value
            v = torch.where(ok, v, prior.sample((101,)).to(torch.float64).median(0).values)
        bijection = biject_to(prior.support)
        jitter = 2 * torch.rand(shape, generator=g, dtype=v.dtype) - 1
        u = bijection.inv(v) + _INIT_RADIUS * jitter
        out[name] = bijection(u)
    return out


def _potential(target: _LogMarginal, priors: dict[str, Any]) -> Any:
    """U(z) = -[log p(y | theta) + sum log p(theta_i) + log |d theta_i / d z_i|], theta_i =
    biject_to(support_i)(z_i) elementwise: the unconstrained potential that NUTS explores."""
    from torch.distributions import biject_to

    bijections = {name: biject_to(prior.support) for name, prior in priors.items()}

    def potential(z: dict[str, torch.Tensor]) -> torch.Tensor:
        values, log_joint = {}, 0.0
        for name, prior in priors.items():
            values[name] = theta = bijections[name](z[name])
            log_joint = log_joint + prior.log_prob(theta).sum()
            log_joint = log_joint + bijections[name].log_abs_det_jacobian(z[name], theta).sum()
        try:  # NUTS runs on the CPU; the likelihood on the model's device
            log_likelihood = target.evaluate(values).cpu()
        except torch.linalg.LinAlgError:
            # a proposal with a numerically singular covariance: NaN energy with zero gradient,
            # which NUTS rejects as a divergence (Pyro's own rule for singular matrices)
            return sum((v * 0.0).sum() for v in z.values()) + math.nan
        return -(log_joint + log_likelihood)

    return potential, bijections


def _run_chain(target: _LogMarginal, priors: dict, init: dict, options: dict, bar: Any):
    """One NUTS chain: constrained draws {name: (S,)} and per-draw sampler statistics."""
    from pyro.infer import MCMC, NUTS

    potential, bijections = _potential(target, priors)
    stats: dict[str, list] = {
        k: [] for k in ("lp", "step_size", "n_steps", "acceptance_rate", "diverging")
    }
    seen = {"evaluations": target.evaluations, "accept": 0.0, "divergences": 0}

    def hook(kernel: Any, params: Any, stage: str, i: int) -> None:
        bar.update(1)
        steps, seen["evaluations"] = target.evaluations - seen["evaluations"], target.evaluations
        if not stage.startswith("Sample"):
            return
        # Pyro keeps a running mean of the acceptance probability over the draws: undo it
        mean_accept = float(getattr(kernel, "_mean_accept_prob", math.nan))
        accept, seen["accept"] = (i + 1) * mean_accept - i * seen["accept"], mean_accept
        energy = getattr(kernel, "_potential_energy_last", None)
        stats["lp"].append(-float(energy) if energy is not None else math.nan)
        stats["step_size"].append(float(kernel.step_size))
        stats["n_steps"].append(steps)
        stats["acceptance_rate"].append(min(max(accept, 0.0), 1.0))
        divergences = len(kernel.diagnostics()["divergences"])  # post-warmup divergent steps
        stats["diverging"].append(divergences > seen["divergences"])
        seen["divergences"] = divergences

    kernel = NUTS(
        potential_fn=potential,
        target_accept_prob=options["target_accept_prob"],
        max_tree_depth=options["max_tree_depth"],
        jit_compile=False,
    )
    mcmc = MCMC(
        kernel,
        num_samples=options["num_samples"],
        warmup_steps=options["warmup_steps"],
        initial_params={k: bijections[k].inv(v) for k, v in init.items()},
        num_chains=1,
        hook_fn=hook,
        disable_progbar=True,
        transforms={k: b.inv for k, b in bijections.items()},  # Pyro's: constrained -> free
    )
    mcmc.run()
    draws = {k: v.detach().to(torch.float64) for k, v in mcmc.get_samples().items()}
    return draws, {k: np.asarray(v) for k, v in stats.items()}


def nuts_options(
    num_samples: int,
    warmup_steps: int | None,
    num_chains: int,
    seed: int,
    target_accept_prob: float,
    max_tree_depth: int,
) -> dict[str, Any]:
    """Checked sampler settings (``warmup_steps=None``: ``num_samples``), as plain numbers.

    Raises
    ------
    ValueRangeError
        A count below its minimum or ``target_accept_prob`` outside (0, 1).
    """
    warmup_steps = num_samples if warmup_steps is None else warmup_steps
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueRangeError(f"expected num_samples >= 1, got {num_samples}")
    check_num_samples(num_samples)
    for name, value, low in (
        ("warmup_steps", warmup_steps, 0),
        ("num_chains", num_chains, 1),
        ("max_tree_depth", max_tree_depth, 1),
    ):
        if int(value) != value or value < low:
            raise ValueRangeError(f"expected an integer {name} >= {low}, got {value}")
    if not 0.0 < target_accept_prob < 1.0:
        raise ValueRangeError(f"expected 0 < target_accept_prob < 1, got {target_accept_prob}")
    return {
        "num_chains": int(num_chains),
        "seed": int(seed),
        "num_samples": int(num_samples),
        "warmup_steps": int(warmup_steps),
        "target_accept_prob": float(target_accept_prob),
        "max_tree_depth": int(max_tree_depth),
    }


def run_nuts(
    model: Any,
    log_marginal: Callable[[], torch.Tensor],
    priors: dict[str, Any],
    options: Mapping[str, Any],
    progress: bool | None = None,
    outputs: Outputs | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray], Any]:
    r"""NUTS chains, one after the other, over the hyper-parameters of ``priors``.

    Parameters
    ----------
    model : Model
        A working copy (its values are the chains' starting points; draws are substituted
        functionally, so it is left as it was).
    log_marginal : callable
        ``() -> scalar tensor``: :math:`\log p(y \mid \theta)` evaluated on ``model``'s
        parameters, differentiable in them.
    priors : dict
        ``{name: distribution}`` from :func:`~workbench.models.hyper_priors.resolve_priors`.
    options : mapping
        From :func:`nuts_options`.
    progress : bool, optional
        One bar over all chains and outputs.
    outputs : callable, optional
        ``fn(draws, seed, bar)`` run afterwards with its own spawned seed (replicates, pointwise
        log densities).

    Returns
    -------
    draws : dict of str to torch.Tensor
        Constrained draws, shape (chain, draw, *shape) each.
    stats : dict of str to numpy.ndarray
        ``lp``, ``step_size``, ``n_steps``, ``acceptance_rate``, ``diverging`` (chain, draw).
    result
        What ``outputs`` returned (None without it).

    Notes
    -----
    Each chain's seed and the outputs' seed are spawned from ``options["seed"]`` with
    ``numpy.random.SeedSequence``; torch's global RNG state is restored afterwards.
    """
    num_chains, num_samples = options["num_chains"], options["num_samples"]
    target = _LogMarginal(model, log_marginal, list(priors))
    *chain_seeds, output_seed = (
        int(s.generate_state(1)[0])
        for s in np.random.SeedSequence(options["seed"]).spawn(num_chains + 1)
    )
    total = num_chains * (options["warmup_steps"] + (2 if outputs else 1) * num_samples)
    runs, result = [], None
    with progress_bar(total, "NUTS", progress) as bar, forked_rng():
        for chain, chain_seed in enumerate(chain_seeds):
            bar.set_description(f"NUTS chain {chain + 1}/{num_chains}")
            torch.manual_seed(chain_seed)
            init = _initial_values(model, priors, torch.Generator().manual_seed(chain_seed))
            runs.append(_run_chain(target, priors, init, options, bar))
        draws = {k: torch.stack([run[0][k] for run in runs]) for k in priors}
        if outputs is not None:
            bar.set_description("replicates")
            result = outputs(draws, output_seed, bar)
    stats = {k: np.stack([run[1][k] for run in runs]) for k in runs[0][1]}
    return draws, stats, result


def posterior_group(
    draws: Mapping[str, torch.Tensor],
    priors: Mapping[str, Any],
    dims: Mapping[str, tuple[str, ...]] | None = None,
    coords: Mapping[str, Any] | None = None,
) -> dict[str, xr.DataArray]:
    """``{name: DataArray(chain, draw, *dims[name])}`` with ``attrs["prior"]``; ``coords``
    label the extra dims where given."""
    out = {}
    for name, values in draws.items():
        extra = tuple((dims or {}).get(name, ()))
        if len(extra) != values.ndim - 2:
            extra = tuple(f"{name}_dim_{i}" for i in range(values.ndim - 2))
        labels = {d: (coords or {})[d] for d in extra if d in (coords or {})}
        out[name] = xr.DataArray(
            values.cpu().numpy(),
            dims=("chain", "draw", *extra),
            coords=labels,
            attrs={"prior": describe(priors[name])},
        )
    return out


def nuts_attrs(model: Any, priors: Mapping[str, Any], options: Mapping[str, Any]) -> dict:
    """Provenance: the model's values, the priors, the fixed values and the NUTS settings."""
    import pyro

    current = model.hyperparameters()
    settings = {k: v for k, v in options.items() if k not in ("num_chains", "seed")}
    return make_attrs(
        type(model).__name__,
        current,
        inference_library="pyro",
        inference_library_version=pyro.__version__,
        sampler="NUTS",
        num_chains=options["num_chains"],
        seed=options["seed"],
        **settings,
        priors={k: describe(p) for k, p in priors.items()},
        fixed_hyperparameters={k: v for k, v in current.items() if k not in priors},
    )
