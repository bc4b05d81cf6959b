r"""GP-prior variational autoencoders: the multi-modal GP-VAE and its single-modality case.

Latents: ``n_shared`` series seen by every modality plus ``n_specific[m]`` series per modality
m, each an independent unit-variance squared-exponential GP over time, represented by its
Fourier coefficients (:mod:`workbench.inference.fourier`): :math:`z_k = B^\top\tilde z_k`,
:math:`\tilde z_{kw} \sim N(0, c_{kw}(\ell_k))`.

Amortised posterior: each modality's encoder gives Gaussian pseudo-observations
:math:`(\mu_{kt}, \lambda_{kt})` of its latents; those of a shared latent are pooled over the
modalities present (a product of experts, so a missing modality just drops out). q is the
GP posterior those pseudo-observations imply, kept diagonal in the coefficients (the
MM-GPVAE's mean-field q; ``prior="fourier_exact"`` keeps all of it):

.. math::
    q(\tilde z_k) = N\big(P_k^{-1} B (\lambda_k \odot \mu_k),\, P_k^{-1}\big), \qquad
    P_k = \mathrm{diag}(c_k)^{-1} + \mathrm{diag}\big(B\,\mathrm{diag}(\lambda_k) B^\top\big),

so the encoders never see the trial length T (the basis is built per T) and trained models
apply to other lengths. With ``prior="statespace"`` the latents are Matérn-5/2 and q is the
exact conjugate posterior of the pseudo-observations, by
Kalman smoothing in O(T) (:mod:`workbench.models.gpvae_priors`). Training maximises the ELBO
with Pyro SVI (``TraceMeanField_ELBO``: both KLs are analytic); the Poisson readout's expected
log-likelihood is also exact (the guide hands q's moments to the model), the neural decoders use
the reparameterised sample.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import pyro
import torch
import xarray as xr
from gpytorch.constraints import Interval
from pyro import poutine
from torch import nn

from workbench.data.multimodal import TrialData, describe, trial_data
from workbench.errors import ShapeMismatchError
from workbench.models.base import Model
from workbench.models.divergence import check_moments
from workbench.models.gpvae_hyper import GPVAEHyperparameters, check_settings
from workbench.models.gpvae_modalities import make_modality
from workbench.models.gpvae_outputs import gpvae_dataset, gpvae_inference_data, gpvae_scores
from workbench.models.gpvae_priors import make_prior
from workbench.models.gpvae_training import check_schedule, train_svi
from workbench.models.rng import forked_rng

__all__ = ["MultimodalGPVAE"]

_names = itertools.count()


class MultimodalGPVAE(GPVAEHyperparameters, Model):
    """Multi-modal GP-VAE (Gondur et al., ICLR 2024) with Fourier-domain GP latents.

    Parameters
    ----------
    modalities : mapping or list of (name, likelihood) pairs
        Data variable name -> likelihood: ``"poisson"`` (counts, linear-exp readout),
        ``"gaussian"`` (images, keypoints, any real features) or ``"bernoulli"`` (binary).
    n_shared : int
        Latents shared by all modalities.
    n_specific : int or mapping
        Latents private to each modality (one number for all, or per name).
    lengthscale : float, optional
        Initial GP lengthscale in units of the time coordinate (default 10 bins); it is
        learned within ×/÷ 2 of this value (the Fourier basis resolves lengthscales down to
        half of it, and its circle leaves room for twice it).
    prior : {"fourier", "fourier_exact", "statespace"}
        Squared-exponential latents on a truncated Fourier basis with the diagonal of the
        conjugate q of the encoders' pseudo-observations (the MM-GPVAE's choice, O(TF)) or all
        of it (O(TF² + F³)), or Matérn-5/2 latents with that q by Kalman smoothing, O(T).
    decoder : {"mlp", "conv"}
        Decoder of image modalities (features on two dims); ``"conv"`` needs sides divisible
        by 4.
    weights : mapping, optional
        Likelihood weight per modality (balances e.g. 256 pixels against 100 neurons).
    trial_dim, time_dim : str
        Dims of the trials and of the (evenly spaced) time grid.
    layout : dict, optional
        Feature sizes and the time step, set by the first ``fit`` (kept by ``save``).
    seed : int
        Seed of the network initialisation and of the minibatch order.
    """

    def __init__(
        self,
        modalities: Mapping[str, str] | list,
        *,
        n_shared: int = 1,
        n_specific: int | Mapping[str, int] = 1,
        lengthscale: float | None = None,
        decoder: str = "mlp",
        prior: str = "fourier",
        weights: Mapping[str, float] | None = None,
        trial_dim: str = "trial",
        time_dim: str = "time",
        layout: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        modalities = dict(modalities)  # pairs keep their order through JSON configs
        if not modalities or "shared" in modalities:
            raise ValueError(f"expected modality names other than 'shared', got {list(modalities)}")
        specific = (
            n_specific if isinstance(n_specific, Mapping) else dict.fromkeys(modalities, n_specific)
        )
        if n_shared < 0 or any(specific.get(m, 0) < 0 for m in modalities):
            raise ValueError(f"expected non-negative latent counts, got {n_shared}, {specific}")
        if n_shared + sum(specific.get(m, 0) for m in modalities) == 0:
            raise ValueError("expected at least one latent")
        self.modalities = modalities
        self.n_shared, self.n_specific = n_shared, {m: specific.get(m, 0) for m in modalities}
        self.initial_lengthscale, self.decoder = lengthscale, decoder
        make_prior(prior, 1.0)  # fails early on an unknown name
        self.prior = prior
        self.weights = check_settings(lengthscale, weights, modalities)
        self.trial_dim, self.time_dim, self.seed = trial_dim, time_dim, seed
        self.layout: dict | None = None
        self.elbo_trace: list[float] = []
        self._pyro_name = f"{type(self).__name__}{next(_names)}"
        self._moments: tuple[torch.Tensor, torch.Tensor] | None = None
        self._template: TrialData | None = None
        if layout is not None:
            self._build(layout)

    def _fit_state(self) -> dict[str, Any]:
        """ELBO trace (seeds further fits) and feature coordinates of the training data."""
        state, template = {"elbo_trace": self.elbo_trace}, self._template
        if template is not None:
            slim = {m: a._replace(values=a.values[:0], observed=a.observed[:0])
                    for m, a in template.modalities.items()}  # fmt: skip
            state["_template"] = template._replace(modalities=slim)
        return state

    _fit_attributes = ("elbo_trace", "_template")

    def get_config(self) -> dict[str, Any]:
        same = "n_shared n_specific decoder prior weights trial_dim time_dim layout seed".split()
        return {
            "modalities": [[m, k] for m, k in self.modalities.items()],
            "lengthscale": self.initial_lengthscale,
            **{k: getattr(self, k) for k in same},
        }

    # -- structure -----------------------------------------------------------------------------
    @property
    def latent_groups(self) -> list[str]:
        """Which modality each latent belongs to (``shared`` for the shared ones)."""
        own = [m for m, n in self.n_specific.items() for _ in range(n)]
        return ["shared"] * self.n_shared + own

    @property
    def latent_names(self) -> list[str]:
        """The group's name, numbered (``shared_0``, ...) when the group has several."""
        groups, counts, names = self.latent_groups, Counter(self.latent_groups), []
        for i, g in enumerate(groups):
            names.append(g if counts[g] == 1 else f"{g}_{groups[:i].count(g)}")
        return names

    def latent_index(self, modality: str) -> torch.Tensor:
        """Positions of the latents a modality sees: the shared ones, then its own."""
        groups = self.latent_groups
        own = [i for i, g in enumerate(groups) if g in ("shared", modality)]
        return torch.tensor(own, device=self.device)

    def _build(self, layout: dict) -> None:
        with forked_rng():
            torch.manual_seed(self.seed)
            self._build_networks(layout)

    def _build_networks(self, layout: dict) -> None:
        self.layout = layout
        nets = {}
        for m, kind in self.modalities.items():
            sizes = layout["features"][m]["sizes"]
            image = tuple(sizes) if len(sizes) == 2 else None
            nets[m] = make_modality(
                kind,
                int(np.prod(sizes)),
                len(self.latent_index(m)),
                decoder=self.decoder if image else "mlp",
                image_shape=image,
                scale=layout["features"][m].get("scale", 1.0),  # absent in older files
            )
        self.nets = nn.ModuleDict(nets)
        ell = layout["lengthscale_bins"]
        K = len(self.latent_names)
        self.raw_lengthscale_constraint = Interval(0.5 * ell, 2.0 * ell)
        raw = self.raw_lengthscale_constraint.inverse_transform(torch.tensor(float(ell)))
        self.raw_lengthscale = nn.Parameter(raw.expand(K).clone())
        self._prior = make_prior(self.prior, ell)
        self.to(self.device)  # built at the first fit: on the device the model was moved to

    @property
    def lengthscale_bins(self) -> torch.Tensor:
        """Per-latent lengthscales in bins (K,)."""
        return self.raw_lengthscale_constraint.transform(self.raw_lengthscale)

    # -- variational posterior -----------------------------------------------------------------
    def _q(self, arrays: Mapping[str, Any], n_bins: int):
        """Guide distribution and q's time marginals (trial, K, T) from the encoders'
        pseudo-observations, pooled over the modalities present."""
        first = next(iter(arrays.values()))
        K, R = len(self.latent_names), first.values.shape[0]
        precision = first.values.new_zeros(R, K, n_bins)
        weighted = torch.zeros_like(precision)
        for m, arr in arrays.items():
            seen = (arr.observed.sum(-1) > 0).to(arr.values.dtype)
            mean, lam = self.nets[m].encode(arr.values, seen)
            idx = self.latent_index(m)
            precision = precision.index_add(1, idx, lam)
            weighted = weighted.index_add(1, idx, lam * mean)
        return self._prior.posterior(precision, weighted, self.lengthscale_bins)

    def _guide(self, arrays, n_total: int, n_bins: int, closed_form: bool = True, encode=None):
        pyro.module(self._pyro_name, self)
        seen = arrays if encode is None else {m: arrays[m] for m in encode}
        law, self._moments = self._q(seen, n_bins)
        with pyro.plate("trial", n_total, subsample=torch.arange(law.batch_shape[0])):
            pyro.sample("latents", law)

    def _model(self, arrays, n_total: int, n_bins: int, closed_form: bool = True, encode=None):
        pyro.module(self._pyro_name, self)
        first = next(iter(arrays.values())).values
        R = first.shape[0]
        law = self._prior.site(self.lengthscale_bins, R, n_bins, first)
        with pyro.plate("trial", n_total, subsample=torch.arange(R)):
            z = self._prior.to_time(pyro.sample("latents", law), n_bins)
            mean, var = self._moments if closed_form else (z, torch.zeros_like(z))
            for m, arr in arrays.items():
                idx = self.latent_index(m)
                with poutine.scale(scale=self.weights[m]):
                    net = self.nets[m]
                    net.observe(
                        m,
                        arr.values,
                        arr.observed,
                        z[:, idx],
                        mean[:, idx],
                        var[:, idx],
                        closed_form,
                    )

    # -- public API ----------------------------------------------------------------------------
    def fit(
        self,
        data: xr.Dataset,
        *,
        epochs: int = 100,
        batch_size: int = 20,
        lr: float = 1e-3,
        final_lr: float | None = None,
        modality_dropout: float = 0.5,
        learn_hyperparameters: bool = True,
        progress: bool | None = None,
        callback: Any = None,
    ) -> Self:
        """Pyro SVI (``TraceMeanField_ELBO``, clipped Adam) over minibatches of trials; with
        ``final_lr`` the learning rate decays geometrically from ``lr`` to it over the call's
        steps (default: constant).

        With probability ``modality_dropout`` a minibatch's posterior is encoded from one
        modality only (chosen at random) while every modality is still scored: still a
        lower bound, and it teaches each encoder to infer the shared latents alone, which
        is what cross-modal prediction needs and keeps one modality's encoder from drowning
        the other's early in training. ``elbo_trace`` records the mean ELBO per trial of every
        epoch (under that mix of encoders) and ``callback(epoch, -elbo)`` follows each."""
        final_lr = lr if final_lr is None else final_lr
        check_schedule(lr, final_lr, modality_dropout)
        prepared = self._trial_data(data)
        self._check_or_build(prepared)
        self.raw_lengthscale.requires_grad_(learn_hyperparameters)
        try:
            train_svi(
                self,
                prepared,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                final_lr=final_lr,
                modality_dropout=modality_dropout,
                progress=progress,
                callback=callback,
            )
        finally:
            self._forget_pyro_params()
            self.raw_lengthscale.requires_grad_(True)
        return self

    def _forget_pyro_params(self) -> None:
        """Drop this model's Pyro store entries (a copy, same name, would train them)."""
        store = pyro.get_param_store()
        for key in [k for k in store.keys() if k.startswith(self._pyro_name + "$$$")]:
            del store[key]  # the module keeps its parameters; the global store need not
        self._moments = None

    def _check_or_build(self, prepared: TrialData) -> None:
        if self.layout is None:
            ell = self.initial_lengthscale
            self._build(
                {
                    "features": {m: describe(a) for m, a in prepared.modalities.items()},
                    "bin_width": prepared.bin_width,
                    "lengthscale_bins": 10.0 if ell is None else ell / prepared.bin_width,
                }
            )
            for m, a in prepared.modalities.items():
                self.nets[m].start(a.values, a.observed)
        self._check_layout(prepared)
        self._template = prepared

    def _check_layout(self, prepared: TrialData) -> None:
        for m, a in prepared.modalities.items():
            expected, got = self.layout["features"][m]["sizes"], describe(a)["sizes"]
            if got != expected:
                raise ShapeMismatchError(
                    f"expected modality {m!r} with feature sizes {expected} (dims "
                    f"{self.layout['features'][m]['dims']}, as fitted), got {got}"
                )

    def _trial_data(self, data, required: bool = True) -> TrialData:
        """``data``'s validated tensors, on the model's device."""
        dims = {"trial_dim": self.trial_dim, "time_dim": self.time_dim}
        return trial_data(data, self.modalities, required=required, device=self.device, **dims)

    def _prepare(self, data, required: bool = False) -> TrialData:
        if self.layout is None:
            raise RuntimeError("expected a fitted model (call fit first)")
        prepared = self._trial_data(data, required)
        self._check_layout(prepared)
        return prepared

    def elbo(self, data, *, seed: int = 0) -> float:
        """ELBO per trial on ``data`` (all modalities): exact KL and Poisson terms, one seeded
        reparameterised draw for the neural decoders."""
        prepared = self._prepare(data, required=True)
        n = len(prepared.trials)
        with forked_rng(), torch.no_grad():
            torch.manual_seed(seed)
            try:
                loss = pyro.infer.TraceMeanField_ELBO().loss(
                    self._model, self._guide, prepared.modalities, n, len(prepared.time)
                )
            finally:
                self._forget_pyro_params()
        return -loss / n

    def latent_moments(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """q's latent means and variances (trial, latent, time) given whichever modalities
        ``data`` holds (a missing modality's own latents stay at the prior)."""
        return self._moments_of(self._prepare(data).modalities)

    def _moments_of(self, arrays: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """q's time marginals from already validated modality arrays."""
        n_bins = next(iter(arrays.values())).values.shape[1]
        with torch.no_grad():
            return check_moments(*self._q(arrays, n_bins)[1])

    def posterior(self, data: xr.Dataset) -> xr.Dataset:
        """``latent_mean``/``latent_variance`` (trial, time, latent; ``group`` says shared or
        which modality) and every modality's reconstruction ``<name>_mean`` (trial, time,
        features) from the latents inferred from the modalities in ``data``: leaving one out
        predicts it across modalities through the shared latents."""
        prepared = self._prepare(data)
        return gpvae_dataset(self, prepared, *self._moments_of(prepared.modalities))

    def score(self, data: xr.Dataset) -> xr.Dataset:
        """Held-out reconstruction per modality in ``data``: from all modalities (``all``)
        and, with several, from the other ones only (``others``): mean squared error per
        value (Gaussian), negative log-likelihood per value (Poisson, Bernoulli)."""
        return gpvae_scores(self, self._prepare(data))

    def to_inference_data(self, data: xr.Dataset, *, draws: int = 100, seed: int = 0) -> Any:
        """ArviZ container: ``posterior`` draws ``latents`` from q (chain, draw, trial, time,
        latent), ``posterior_predictive`` replicates and ``log_likelihood`` per modality and bin,
        ``observed_data``."""
        if draws < 1:
            raise ValueError(f"expected draws >= 1, got {draws}")
        prepared = self._prepare(data)
        mean, var = self._moments_of(prepared.modalities)
        return gpvae_inference_data(self, prepared, mean, var, draws, seed)

    def explore(self, data: xr.Dataset, **kwargs: Any) -> Any:
        """Scrub through a trial's time bins: frame, spike raster, latent positions; sliders
        over latent values decode frames (latent traversal)."""
        from workbench.widgets import GPVAEExplorer

        return GPVAEExplorer(self, data, **kwargs)
