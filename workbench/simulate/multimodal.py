"""Paper-style multi-modal trials: GP latents drive Poisson spikes and a behaviour modality."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from scipy import ndimage

__all__ = ["multimodal_trials"]

_VARIANCES = {"shared": 0.3, "neural": 0.5, "behaviour": 0.8}


def _gp_draws(rng, n_trials: int, n_bins: int, lengthscale: float, variance: float):
    t = np.arange(n_bins, dtype=float)
    K = variance * np.exp(-0.5 * (t[:, None] - t) ** 2 / lengthscale**2)
    L = np.linalg.cholesky(K + 1e-8 * variance * np.eye(n_bins))
    return rng.standard_normal((n_trials, n_bins)) @ L.T


def _digit_threes(image_size: int) -> np.ndarray:
    """scikit-learn's bundled 8x8 "3"s (offline MNIST stand-in), upsampled to fill the frame
    minus a border of image_size // 8 pixels, intensities in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    threes = digits.images[digits.target == 3] / 16.0
    pad = image_size // 8
    inner = image_size - 2 * pad
    big = np.stack([ndimage.zoom(d, inner / 8, order=1) for d in threes]).clip(0, 1)
    return np.pad(big, ((0, 0), (pad, pad), (pad, pad)))


def _transform(frame: np.ndarray, angle: float, zoom: float) -> np.ndarray:
    """Rotate by ``angle`` radians and zoom by ``zoom`` about the centre, size preserved."""
    c, s = math.cos(angle), math.sin(angle)
    inverse = np.array([[c, s], [-s, c]]) / zoom
    centre = (np.array(frame.shape) - 1) / 2
    return ndimage.affine_transform(frame, inverse, centre - inverse @ centre, order=1)


def _keypoints(shared: np.ndarray, behaviour: np.ndarray, n_keypoints: int) -> np.ndarray:
    """A jointed limb: segment j turns by (j + 1) * 60° * shared, lengths scale with
    exp(0.3 * behaviour); positions (..., keypoint, 2) of the joint ends."""
    angle = np.pi / 3 * shared[..., None] * np.arange(1, n_keypoints + 1)
    length = np.exp(0.3 * behaviour)[..., None] / n_keypoints
    steps = np.stack([np.cos(angle), np.sin(angle)], -1) * length[..., None]
    return np.cumsum(steps, axis=-2)


def multimodal_trials(
    n_trials: int = 300,
    n_bins: int = 60,
    *,
    n_units: int = 100,
    behaviour: str = "images",
    image_size: int = 16,
    n_keypoints: int = 4,
    lengthscale: float = 10.0,
    bin_width: float = 0.02,
    keypoint_noise: float = 0.02,
    seed: int = 0,
    population_seed: int | None = None,
) -> xr.Dataset:
    r"""Trials of spikes plus behaviour driven by shared and modality-specific GP latents.

    Three squared-exponential GP latents per trial (lengthscale in bins): ``shared``
    (variance 0.3), ``neural`` (0.5) and ``behaviour`` (0.8), as in the MM-GPVAE simulation.
    Spikes: :math:`y_{nt} \sim \mathrm{Poisson}(\exp(W_n [z_S; z_N]_t + b_n))` with
    :math:`W \sim 1.5\,U(-1, 1)`, :math:`b \sim 0.5\,U(-1, 1)`. Behaviour:

    - ``"images"``: frame t is the next of scikit-learn's bundled digit "3"s (cycling; the
      offline stand-in for MNIST), rotated by :math:`120° z_S` and zoomed by
      :math:`\exp(z_B / 2)` (the paper's :math:`|z_B|` zoom is not identifiable in sign);
    - ``"keypoints"``: the joint positions of a limb whose segment angles follow :math:`z_S`
      and whose segment lengths follow :math:`z_B`, plus Gaussian noise.

    ``population_seed`` (default ``seed``) fixes the neurons' loadings and biases alone, so
    further trials, e.g. longer ones, can come from the same population.

    Returns
    -------
    xr.Dataset
        ``spikes`` (trial, time, unit); ``frames`` (trial, time, row, col) in [0, 1] or
        ``keypoints`` (trial, time, keypoint, coord); ground truth ``true_latent`` (trial,
        time, latent) with latents ``shared``, ``neural``, ``behaviour``; ``rate`` (trial,
        time, unit) counts per bin; ``loading`` (unit, latent) and ``bias`` (unit). ``time``
        is in seconds (``bin_width`` per bin).

    Examples
    --------
    >>> ds = multimodal_trials(n_trials=2, n_bins=20, n_units=5)
    >>> dict(ds.frames.sizes)
    {'trial': 2, 'time': 20, 'row': 16, 'col': 16}
    """
    if behaviour not in ("images", "keypoints"):
        raise ValueError(f"expected behaviour in ('images', 'keypoints'), got {behaviour!r}")
    for name, value in (("n_trials", n_trials), ("n_bins", n_bins), ("n_units", n_units)):
        if value < 1:
            raise ValueError(f"expected {name} >= 1, got {value}")
    rng = np.random.default_rng(seed)
    z = {k: _gp_draws(rng, n_trials, n_bins, lengthscale, v) for k, v in _VARIANCES.items()}
    population = np.random.default_rng([seed if population_seed is None else population_seed, 1])
    W = 1.5 * population.uniform(-1, 1, (n_units, 2))
    b = 0.5 * population.uniform(-1, 1, n_units)
    neural = np.stack([z["shared"], z["neural"]], -1)  # (trial, time, 2)
    rate = np.exp(neural @ W.T + b)
    spikes = rng.poisson(rate).astype(float)
    time = np.arange(n_bins) * bin_width
    dims = ("trial", "time")
    coords = {
        "trial": np.arange(n_trials),
        "time": time,
        "unit": np.arange(n_units),
        "latent": list(_VARIANCES),
    }
    data = {
        "spikes": (("trial", "time", "unit"), spikes, {"long_name": "spike count"}),
        "rate": (("trial", "time", "unit"), rate, {"long_name": "expected count per bin"}),
        "true_latent": ((*dims, "latent"), np.stack(list(z.values()), -1)),
        "loading": (("unit", "latent"), np.c_[W[:, 0], W[:, 1], np.zeros(n_units)]),
        "bias": (("unit",), b),
    }
    if behaviour == "images":
        threes = _digit_threes(image_size)
        frames = np.empty((n_trials, n_bins, image_size, image_size))
        angle = np.deg2rad(120.0) * z["shared"]
        zoom = np.exp(0.5 * z["behaviour"])
        for r in range(n_trials):
            for t in range(n_bins):
                digit = threes[(r * n_bins + t) % len(threes)]
                frames[r, t] = _transform(digit, angle[r, t], zoom[r, t])
        data["frames"] = ((*dims, "row", "col"), frames.clip(0, 1), {"long_name": "pixel"})
        coords |= {"row": np.arange(image_size), "col": np.arange(image_size)}
    else:
        points = _keypoints(z["shared"], z["behaviour"], n_keypoints)
        points = points + keypoint_noise * rng.standard_normal(points.shape)
        data["keypoints"] = ((*dims, "keypoint", "coord"), points, {"long_name": "position"})
        coords |= {"keypoint": np.arange(n_keypoints), "coord": ["x", "y"]}
    ds = xr.Dataset(data, coords=coords)
    ds["time"].attrs = {"units": "s", "long_name": "time"}
    ds.attrs = {"simulation": "multimodal_trials", "lengthscale_bins": lengthscale, "seed": seed}
    return ds
