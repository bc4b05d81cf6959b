"""Likelihoods by name, and JSON specs of them for saved models."""

from __future__ import annotations

from typing import Any

from workbench.likelihoods.base import Likelihood
from workbench.likelihoods.bernoulli import Bernoulli
from workbench.likelihoods.gaussian import Gaussian
from workbench.likelihoods.negative_binomial import NegativeBinomial
from workbench.likelihoods.poisson import Poisson
from workbench.likelihoods.student_t import StudentT

__all__ = ["LIKELIHOODS", "likelihood_from_spec", "likelihood_to_spec", "make_likelihood"]

LIKELIHOODS: dict[str, type[Likelihood]] = {
    "gaussian": Gaussian,
    "poisson": Poisson,
    "bernoulli": Bernoulli,
    "negative_binomial": NegativeBinomial,
    "student_t": StudentT,
}


def make_likelihood(likelihood: str | Likelihood) -> Likelihood:
    """A likelihood object from a name in :data:`LIKELIHOODS` or an existing object."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"expected likelihood in {sorted(LIKELIHOODS)}, got {likelihood!r}")
    return LIKELIHOODS[likelihood]()


def likelihood_to_spec(likelihood: Likelihood) -> dict[str, Any]:
    name = next((n for n, cls in LIKELIHOODS.items() if type(likelihood) is cls), None)
    if name is None:
        raise TypeError(f"expected one of {sorted(LIKELIHOODS)}, got {type(likelihood).__name__}")
    return {"name": name, "args": likelihood.get_config()}


def likelihood_from_spec(spec: dict[str, Any]) -> Likelihood:
    return LIKELIHOODS[spec["name"]](**spec.get("args", {}))
