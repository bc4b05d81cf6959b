"""Pure state-space numerics: discretisation, Kalman filtering and smoothing."""

from __future__ import annotations

from workbench.ssm.discretize import SDE as SDE
from workbench.ssm.discretize import discretize_sde as discretize_sde
from workbench.ssm.kalman import FilterResult as FilterResult
from workbench.ssm.kalman import SmootherResult as SmootherResult
from workbench.ssm.kalman import kalman_filter as kalman_filter
from workbench.ssm.kalman import rts_smoother as rts_smoother
from workbench.ssm.parallel import associative_scan as associative_scan
from workbench.ssm.parallel import parallel_kalman_filter as parallel_kalman_filter
from workbench.ssm.parallel import parallel_rts_smoother as parallel_rts_smoother
from workbench.ssm.sample import sample_state_space_prior as sample_state_space_prior
from workbench.ssm.square_root import SqrtFilterResult as SqrtFilterResult
from workbench.ssm.square_root import sqrt_kalman_filter as sqrt_kalman_filter
from workbench.ssm.square_root import sqrt_rts_smoother as sqrt_rts_smoother
from workbench.ssm.two_filter import reverse_transitions as reverse_transitions
from workbench.ssm.two_filter import two_filter_smoother as two_filter_smoother

__all__ = [
    "SDE",
    "FilterResult",
    "SmootherResult",
    "SqrtFilterResult",
    "associative_scan",
    "discretize_sde",
    "kalman_filter",
    "parallel_kalman_filter",
    "parallel_rts_smoother",
    "reverse_transitions",
    "rts_smoother",
    "sample_state_space_prior",
    "sqrt_kalman_filter",
    "sqrt_rts_smoother",
    "two_filter_smoother",
]
