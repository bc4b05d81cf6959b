"""Observation models with Gaussian expectations for conjugate-computation VI."""

from __future__ import annotations

from workbench.likelihoods.base import ExpectedLogProb as ExpectedLogProb
from workbench.likelihoods.base import Likelihood as Likelihood
from workbench.likelihoods.bernoulli import Bernoulli as Bernoulli
from workbench.likelihoods.gaussian import Gaussian as Gaussian
from workbench.likelihoods.negative_binomial import NegativeBinomial as NegativeBinomial
from workbench.likelihoods.poisson import Poisson as Poisson

__all__ = ["Bernoulli", "ExpectedLogProb", "Gaussian", "Likelihood", "NegativeBinomial", "Poisson"]
