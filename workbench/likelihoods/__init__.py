"""Observation models with Gaussian expectations for conjugate-computation VI."""

from __future__ import annotations

from workbench.likelihoods.base import ExpectedLogProb as ExpectedLogProb
from workbench.likelihoods.base import Likelihood as Likelihood
from workbench.likelihoods.bernoulli import Bernoulli as Bernoulli
from workbench.likelihoods.gaussian import Gaussian as Gaussian
from workbench.likelihoods.negative_binomial import NegativeBinomial as NegativeBinomial
from workbench.likelihoods.poisson import Poisson as Poisson
from workbench.likelihoods.registry import LIKELIHOODS as LIKELIHOODS
from workbench.likelihoods.registry import likelihood_from_spec as likelihood_from_spec
from workbench.likelihoods.registry import likelihood_to_spec as likelihood_to_spec
from workbench.likelihoods.registry import make_likelihood as make_likelihood
from workbench.likelihoods.sampling import sample_observations as sample_observations
from workbench.likelihoods.student_t import StudentT as StudentT

__all__ = [
    "LIKELIHOODS",
    "Bernoulli",
    "ExpectedLogProb",
    "Gaussian",
    "Likelihood",
    "NegativeBinomial",
    "Poisson",
    "StudentT",
    "likelihood_from_spec",
    "likelihood_to_spec",
    "make_likelihood",
    "sample_observations",
]
