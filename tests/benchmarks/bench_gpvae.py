"""Benchmark: the multi-modal GP-VAE on the paper-style simulation, against Elephant's GPFA
and the single-modality GP-VAE, plus the prior's cost in T.

Run: ``python tests/benchmarks/bench_gpvae.py [--quick] [--seeds 0 1 2]``. One thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``).

Data: ``wb.simulate.multimodal_trials`` (300 trials, T = 60 bins of 20 ms, 100 neurons,
16 x 16 frames; 240 train / 60 held out). Metric: held-out affine R² of each true latent on the
estimated one (``wb.metrics.affine_r2``); for GPFA and the single-modality GP-VAE, whose latents
are not split into shared and private, each true latent is regressed on all their latents.

1. MultimodalGPVAE: seconds per epoch, epochs and seconds until the shared-latent R² reaches
   0.95 (checked every 10 epochs), final R² per latent, held-out frame MSE per pixel with both
   modalities and predicted from the spikes alone, Poisson NLL per bin.
2. Elephant GPFA (x_dim = 2, EM) on the spikes alone: fit + transform time and R².
3. GPVAE on the frames alone (2 latents): R² and frame MSE.
4. Prior cost per step (20 trials x 3 latents, forward + backward of q, its marginals and the
   KL) for T in {60, 240, 1000, 4000}: the model's priors (``fourier`` with the diagonal q,
   ``fourier_exact``, ``statespace``) and the dense time-domain conjugate posterior
   (float64 Cholesky of T x T); at T = 4000 the exact-q Fourier and dense ones are timed on
   one trial and multiplied by 20.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.inference.pseudo_posterior import dense_pseudo_posterior  # noqa: E402
from workbench.metrics import affine_r2  # noqa: E402
from workbench.models.gpvae_priors import make_prior  # noqa: E402
from workbench.testing.gpfa import elephant_gpfa, spike_trains  # noqa: E402

torch.set_num_threads(1)
warnings.simplefilter("ignore")
PAIRS = (("shared", "shared"), ("neural", "spikes"), ("behaviour", "frames"))


def scores(model, test) -> dict[str, float]:
    post = model.posterior(test[["spikes", "frames"]])
    out = {
        n: affine_r2(test.true_latent.sel(latent=n).values, post.latent_mean.sel(latent=k).values)
        for n, k in PAIRS
    }
    out["frame_mse"] = float(((post.frames_mean - test.frames) ** 2).mean())
    cross = model.posterior(test[["spikes"]])
    out["cross_mse"] = float(((cross.frames_mean - test.frames) ** 2).mean())
    rate = post.spikes_mean.values
    out["poisson_nll"] = float(
        np.mean(
            rate
            - test.spikes.values * np.log(rate)
            + np.vectorize(math.lgamma)(test.spikes.values + 1)
        )
    )
    return out


def multimodal(train, test, seed: int, max_epochs: int, prior: str, decay: float | None):
    model = wb.MultimodalGPVAE({"spikes": "poisson", "frames": "gaussian"}, seed=seed, prior=prior)
    elapsed, reached = 0.0, None
    while len(model.elbo_trace) < max_epochs:
        start = time.perf_counter()
        lr = 1e-3 * (1.0 if decay is None else decay ** (len(model.elbo_trace) / max_epochs))
        final = None if decay is None else lr * decay ** (10 / max_epochs)
        model.fit(train[["spikes", "frames"]], epochs=10, lr=lr, final_lr=final, progress=False)
        elapsed += time.perf_counter() - start
        r2 = scores(model, test)
        if reached is None and r2["shared"] >= 0.95:
            reached = (len(model.elbo_trace), elapsed)
    out = scores(model, test)
    out |= {"s_per_epoch": elapsed / len(model.elbo_trace), "epochs": len(model.elbo_trace)}
    out["reached"] = reached
    return out


def gpfa(train, test) -> dict[str, float]:
    dt = float(train.time[1] - train.time[0])
    start = time.perf_counter()
    est, _ = elephant_gpfa(
        spike_trains(train.spikes.values, dt),
        dt,
        2,
        em_iters=100,
        transform=spike_trains(test.spikes.values, dt),
    )
    seconds = time.perf_counter() - start
    return {n: affine_r2(test.true_latent.sel(latent=n).values, est) for n, _ in PAIRS} | {
        "seconds": seconds
    }


def single(train, test, seed: int, epochs: int) -> dict[str, float]:
    model = wb.GPVAE("frames", n_latents=2, seed=seed)
    start = time.perf_counter()
    model.fit(train[["frames"]], epochs=epochs, progress=False)
    seconds = time.perf_counter() - start
    post = model.posterior(test[["frames"]])
    est = post.latent_mean.transpose("trial", "time", "latent").values
    out = {n: affine_r2(test.true_latent.sel(latent=n).values, est) for n, _ in PAIRS}
    out["frame_mse"] = float(((post.frames_mean - test.frames) ** 2).mean())
    return out | {"s_per_epoch": seconds / epochs}


def prior_cost(T: int, repeats: int) -> dict[str, float]:
    """Median seconds of one forward + backward of q, its time marginals and the KL for each
    prior of the model (``workbench.models.gpvae_priors``) and for the dense time-domain
    conjugate posterior; slow ones are timed on one trial and scaled by 20."""
    gen = torch.Generator().manual_seed(0)
    lam = torch.rand(20, 3, T, generator=gen) + 0.5
    weighted = lam * torch.randn(20, 3, T, generator=gen)
    ell = torch.full((3,), 10.0, requires_grad=True)

    def model_prior(name, trials):
        prior = make_prior(name, 10.0)
        law, (mean, var) = prior.posterior(lam[trials], weighted[trials], ell)
        kl = torch.distributions.kl_divergence(law, prior.site(ell, law.batch_shape[0], T, lam))
        return kl.sum() + mean.sum() + var.sum()

    def dense(trials):
        t = torch.arange(T, dtype=torch.float64)
        total = 0.0
        for k in range(3):
            K = torch.exp(-0.5 * (t[:, None] - t) ** 2 / ell[k].double() ** 2)
            q = dense_pseudo_posterior(
                (weighted / lam)[trials, k].double(),
                lam[trials, k].double(),
                K + 1e-6 * torch.eye(T, dtype=torch.float64),
            )
            total = total + q.kl.sum() + q.mean.sum() + q.var.sum()
        return total

    runs = {
        "fourier": lambda tr: model_prior("fourier", tr),
        "fourier_exact": lambda tr: model_prior("fourier_exact", tr),
        "statespace": lambda tr: model_prior("statespace", tr),
        "dense": dense,
    }
    out = {}
    for name, fn in runs.items():
        slow = (name == "dense" and T > 1000) or (name == "fourier_exact" and T > 1000)
        trials, scale = (slice(0, 1), 20) if slow else (slice(None), 1)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(trials).backward()
            times.append(scale * (time.perf_counter() - start))
        out[name] = float(np.median(times))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--prior", default="fourier")
    parser.add_argument("--decay", type=float, default=None, help="final lr / initial lr")
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args()
    ds = wb.simulate.multimodal_trials(n_trials=300, n_bins=60, seed=0)
    train, test = ds.isel(trial=slice(0, 240)), ds.isel(trial=slice(240, 300))
    max_epochs = 20 if args.quick else 300
    print(
        f"\n### 1. MultimodalGPVAE (prior {args.prior}), {max_epochs} epochs, seeds {args.seeds}\n"
    )
    print(
        "| seed | s/epoch | R² ≥ 0.95 at (epochs, s) | shared R² | neural R² | behaviour R² "
        "| frame MSE/px | frames from spikes MSE/px | Poisson NLL/bin |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        r = multimodal(train, test, seed, max_epochs, args.prior, args.decay)
        reached = (
            "not reached" if r["reached"] is None else f"{r['reached'][0]}, {r['reached'][1]:.0f}"
        )
        print(
            f"| {seed} | {r['s_per_epoch']:.2f} | {reached} | {r['shared']:.3f} | "
            f"{r['neural']:.3f} | {r['behaviour']:.3f} | {r['frame_mse']:.4f} | "
            f"{r['cross_mse']:.4f} | {r['poisson_nll']:.4f} |",
            flush=True,
        )
    if args.skip_peers:
        return
    print("\n### 2. Elephant GPFA (x_dim = 2) on the spikes alone\n")
    g = gpfa(train.isel(trial=slice(0, 48)) if args.quick else train, test)
    print("| method | seconds | shared R² | neural R² | behaviour R² |\n|---|---|---|---|---|")
    print(
        f"| GPFA | {g['seconds']:.1f} | {g['shared']:.3f} | {g['neural']:.3f} | "
        f"{g['behaviour']:.3f} |"
    )
    print("\n### 3. GPVAE on the frames alone (2 latents)\n")
    s = single(train, test, args.seeds[0], max_epochs)
    print("| method | s/epoch | shared R² | neural R² | behaviour R² | frame MSE/px |")
    print("|---|---|---|---|---|---|")
    print(
        f"| GPVAE (frames) | {s['s_per_epoch']:.2f} | {s['shared']:.3f} | {s['neural']:.3f} | "
        f"{s['behaviour']:.3f} | {s['frame_mse']:.4f} |"
    )
    print("\n### 4. Prior + KL + moments, forward + backward, 20 trials x 3 latents\n")
    print("| T | Fourier (diagonal q) ms | Fourier (exact q) ms | state space ms | dense ms |")
    print("|---|---|---|---|---|")
    for T in (60, 240, 1000) if args.quick else (60, 240, 1000, 4000):
        c = prior_cost(T, 3 if T >= 1000 else 10)
        print(
            f"| {T} | "
            + " | ".join(
                f"{1e3 * c[k]:.1f}" for k in ("fourier", "fourier_exact", "statespace", "dense")
            )
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
