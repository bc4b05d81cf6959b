"""Maximin ordering, rho-patterns, KL-optimal factors and sparse triangular solves vs dense."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import scipy.linalg
import torch

from workbench.linalg import maximin_pattern
from workbench.linalg.factor import (
    kl_factor,
    padded_pattern,
    prior_kl,
    solve_upper,
    solve_upper_transposed,
    to_dense,
)


def _oracle_order(X, first):
    """O(n^2) maximin: update every point's distance to the taken set after each pick."""
    dist = np.linalg.norm(X - X[first], axis=1)
    dist[first] = -1.0
    order, lengths = [first], [np.inf]
    for _ in range(1, len(X)):
        i = int(np.argmax(dist))
        order.append(i)
        lengths.append(dist[i])
        dist = np.minimum(dist, np.linalg.norm(X - X[i], axis=1))
        dist[order] = -1.0
    return np.array(order), np.array(lengths)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_maximin_order_and_pattern_equal_the_quadratic_oracle(d):
    X = np.random.default_rng(d).uniform(size=(400, d))
    rho = 2.0
    pattern = maximin_pattern(X, rho)
    first = int(np.argmin(((X - X.mean(0)) ** 2).sum(1)))
    order, lengths = _oracle_order(X, first)
    np.testing.assert_array_equal(pattern.order, order)
    np.testing.assert_allclose(pattern.lengths[1:], lengths[1:], rtol=1e-12)
    assert pattern.lengths[0] == pattern.lengths[1]
    assert np.all(np.diff(pattern.lengths) <= 0)
    Y = X[order]
    D = np.linalg.norm(Y[:, None] - Y[None, :], axis=-1)
    for k in range(len(X)):
        expected = np.flatnonzero((np.arange(len(X)) < k) & (D[k] <= rho * pattern.lengths[k]))
        got = pattern.indices[pattern.indptr[k] : pattern.indptr[k + 1]]
        np.testing.assert_array_equal(got, np.r_[expected, k] if k else [0])


def _kernel():
    kernel = gpytorch.kernels.MaternKernel(nu=1.5).double()
    kernel.lengthscale = 0.2
    return lambda a, b: kernel(a, b).to_dense()


def _factor(X, rho):
    pattern = maximin_pattern(X, rho)
    index = padded_pattern(pattern.indptr, pattern.indices)
    Xo = torch.as_tensor(X[pattern.order])
    with torch.no_grad():
        values = kl_factor(_kernel(), Xo, torch.as_tensor(index), nugget=1e-6).numpy()
    K = _kernel()(Xo, Xo).detach().numpy() + 1e-6 * np.eye(len(X))
    return index, values, K


def test_full_pattern_reproduces_the_dense_precision():
    X = np.random.default_rng(0).uniform(size=(300, 2))
    index, values, K = _factor(X, rho=1e6)  # every earlier point: the exact Cholesky
    U = to_dense(index, values)
    Q = np.linalg.inv(K)
    assert np.linalg.norm(U @ U.T - Q) < 1e-8 * np.linalg.norm(Q)
    assert abs(prior_kl(values, np.linalg.slogdet(K)[1])) < 1e-8


def test_kl_identity_equals_the_dense_gaussian_kl_and_falls_with_rho():
    X = np.random.default_rng(1).uniform(size=(250, 2))
    kls = []
    for rho in (1.5, 2.0, 3.0):
        index, values, K = _factor(X, rho)
        U = to_dense(index, values)
        Q = U @ U.T
        _, logdet_K = np.linalg.slogdet(K)
        _, logdet_Q = np.linalg.slogdet(Q)
        dense = 0.5 * (np.trace(Q @ K) - len(X) - logdet_Q - logdet_K)
        fast = prior_kl(values, logdet_K)
        assert abs(fast - dense) < 1e-8 * max(1.0, abs(dense))
        np.testing.assert_allclose(np.einsum("ij,ik,kj->j", U, K, U), 1.0, rtol=1e-8)
        kls.append(fast)
    assert kls[0] > kls[1] > kls[2] > 0


def test_sparse_triangular_solves_equal_dense_ones():
    X = np.random.default_rng(2).uniform(size=(200, 3))
    index, values, _ = _factor(X, rho=2.0)
    U = to_dense(index, values)
    b = np.random.default_rng(3).normal(size=200)
    expected = scipy.linalg.solve_triangular(U, b)
    np.testing.assert_allclose(solve_upper(index, values, b), expected, rtol=1e-10, atol=1e-10)
    expected = scipy.linalg.solve_triangular(U.T, b, lower=True)
    got = solve_upper_transposed(index, values, b)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_factor_gradients_reach_the_kernel():
    X = torch.as_tensor(np.random.default_rng(4).uniform(size=(60, 2)))
    pattern = maximin_pattern(X.numpy(), 2.0)
    index = torch.as_tensor(padded_pattern(pattern.indptr, pattern.indices))
    kernel = gpytorch.kernels.MaternKernel(nu=1.5).double()
    values = kl_factor(lambda a, b: kernel(a, b).to_dense(), X[pattern.order], index, 1e-6)
    values[:, -1].log().sum().backward()
    assert kernel.raw_lengthscale.grad is not None and torch.isfinite(kernel.raw_lengthscale.grad)


def test_bad_input():
    with pytest.raises(ValueError, match="finite"):
        maximin_pattern(np.array([[0.0, np.nan], [1.0, 1.0]]), 2.0)
    with pytest.raises(ValueError, match="rho"):
        maximin_pattern(np.zeros((3, 2)) + np.arange(3)[:, None], 0.0)
    with pytest.raises(ValueError, match="shape"):
        maximin_pattern(np.zeros(5), 2.0)
    single = maximin_pattern(np.zeros((1, 2)), 2.0)
    assert single.order.tolist() == [0] and single.indptr.tolist() == [0, 1]


def test_reduced_ancestors_equal_the_dense_definition_and_contain_the_pattern():
    from workbench.linalg import reduced_ancestors

    X = np.random.default_rng(5).uniform(size=(300, 2))
    rho = 2.0
    pattern = maximin_pattern(X, rho)
    Y = X[pattern.order]
    indptr, indices = reduced_ancestors(Y, pattern.lengths, rho)
    D = np.linalg.norm(Y[:, None] - Y[None, :], axis=-1)
    for j in range(len(X)):
        earlier = np.arange(j)
        expected = np.r_[earlier[D[earlier, j] <= rho * pattern.lengths[earlier]], j]
        got = indices[indptr[j] : indptr[j + 1]]
        np.testing.assert_array_equal(got, expected)
        column = pattern.indices[pattern.indptr[j] : pattern.indptr[j + 1]]
        assert set(column) <= set(got)


@pytest.mark.parametrize("rho", [1e6, 2.0])
def test_ic0_of_the_posterior_precision(rho):
    from workbench.linalg.ic0 import ic0_posterior

    X = np.random.default_rng(6).uniform(size=(200, 2))
    index, values, _ = _factor(X, rho)
    curvature = np.random.default_rng(7).uniform(1.0, 5.0, size=200)
    U = to_dense(index, values)
    P = U @ U.T + np.diag(curvature)
    V = to_dense(index, ic0_posterior(index, values, curvature))
    if rho > 1e5:  # full pattern: the exact upper factor, V V^T = P
        assert np.linalg.norm(V @ V.T - P) < 1e-8 * np.linalg.norm(P)
    on_pattern = to_dense(index, np.where(index >= 0, 1.0, 0.0)) > 0
    np.testing.assert_allclose((V @ V.T)[on_pattern], P[on_pattern], rtol=1e-8, atol=1e-8)
    assert np.all(np.diag(V) > 0) and np.allclose(V, np.triu(V))


def test_robust_ic0_falls_back_to_a_shift_when_ic0_breaks_down():
    from workbench.linalg.ic0 import ic0_posterior, ic0_robust

    index = np.array([[-1, 0], [0, 1]])
    prior = np.array([[0.0, 1.0], [0.0, 1.0]])  # U U^T = I
    np.testing.assert_allclose(ic0_robust(index, prior, np.zeros(2)), prior)
    negative = np.array([-2.0, -2.0])  # P = -I: the first pivot is negative
    with pytest.raises(np.linalg.LinAlgError, match="pivot"):
        ic0_posterior(index, prior, negative)
    values = ic0_robust(index, prior, negative)  # shifted by the whole scale 3: P = 2 I
    np.testing.assert_allclose(values, np.sqrt(2) * prior)
