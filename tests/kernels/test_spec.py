"""Kernel specs: JSON structure that rebuilds a kernel which, given the weights, is the same."""

from __future__ import annotations

import json

import gpytorch
import pytest
import torch
from gpytorch.constraints import GreaterThan, Interval, LessThan
from gpytorch.kernels import (
    CosineKernel,
    LinearKernel,
    MaternKernel,
    PeriodicKernel,
    RBFKernel,
    RQKernel,
    ScaleKernel,
    SpectralMixtureKernel,
)

from workbench.errors import ModelFileError
from workbench.kernels import kernel_from_spec, kernel_to_spec, register_kernel
from workbench.kernels import spec as spec_module

B2 = torch.Size([2])
B3 = torch.Size([3])

# (id, factory, input dimension)
CASES = [
    ("rbf", lambda: RBFKernel(), 1),
    ("matern05", lambda: MaternKernel(nu=0.5), 1),
    ("matern15", lambda: MaternKernel(nu=1.5), 2),
    ("matern25", lambda: MaternKernel(nu=2.5), 1),
    ("periodic", lambda: PeriodicKernel(), 1),
    ("rq", lambda: RQKernel(), 1),
    ("linear", lambda: LinearKernel(), 2),
    ("cosine", lambda: CosineKernel(), 1),
    ("scale", lambda: ScaleKernel(RBFKernel()), 1),
    ("sum", lambda: RBFKernel() + PeriodicKernel(), 1),
    ("product", lambda: RBFKernel() * PeriodicKernel(), 1),
    ("sum3", lambda: RBFKernel() + MaternKernel(nu=0.5) + LinearKernel(), 1),
    (
        "nested",
        lambda: ScaleKernel(RBFKernel()) + ScaleKernel(PeriodicKernel() * RBFKernel()),
        1,
    ),
    ("scale-of-sum", lambda: ScaleKernel(RQKernel() + CosineKernel() * MaternKernel()), 1),
    ("ard-rbf", lambda: RBFKernel(ard_num_dims=3), 3),
    ("ard-matern", lambda: MaternKernel(nu=1.5, ard_num_dims=2), 2),
    ("ard-periodic", lambda: PeriodicKernel(ard_num_dims=2), 2),
    ("ard-rq", lambda: RQKernel(ard_num_dims=2), 2),
    ("ard-scale", lambda: ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=3)), 3),
    ("batch-rbf", lambda: RBFKernel(batch_shape=B2), 1),
    ("batch-linear", lambda: LinearKernel(batch_shape=B2), 1),
    ("batch-cosine", lambda: CosineKernel(batch_shape=B3), 1),
    (
        "batch-ard-scale",
        lambda: ScaleKernel(RBFKernel(batch_shape=B3, ard_num_dims=2), batch_shape=B3),
        2,
    ),
    ("batch-sum", lambda: RBFKernel(batch_shape=B2) + PeriodicKernel(batch_shape=B2), 1),
    (
        "batch-product",
        lambda: ScaleKernel(
            MaternKernel(nu=0.5, batch_shape=B2) * RQKernel(batch_shape=B2), batch_shape=B2
        ),
        1,
    ),
    ("active-dims", lambda: RBFKernel(active_dims=[1]) + LinearKernel(active_dims=[0]), 2),
    ("interval", lambda: RBFKernel(lengthscale_constraint=Interval(0.1, 10.0)), 1),
    (
        "greater-less",
        lambda: PeriodicKernel(
            period_length_constraint=GreaterThan(0.5), lengthscale_constraint=LessThan(5.0)
        ),
        1,
    ),
    ("scale-interval", lambda: ScaleKernel(RBFKernel(), outputscale_constraint=Interval(1, 3)), 1),
]


def _randomised(factory, seed: int) -> gpytorch.kernels.Kernel:
    """A float64 kernel whose raw parameters are random (not the constructor's defaults)."""
    kernel = factory().double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in kernel.parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    return kernel


def _inputs(d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.randn(7, d, generator=generator, dtype=torch.float64)
    x2 = torch.randn(5, d, generator=generator, dtype=torch.float64)
    return x1, x2


def _constraints(kernel: gpytorch.kernels.Kernel) -> dict[str, tuple[str, float, float]]:
    return {
        f"{owner}.{name}" if owner else name: (
            type(c).__name__,
            float(c.lower_bound),
            float(c.upper_bound),
        )
        for owner, module in kernel.named_modules()
        for name, c in getattr(module, "_constraints", {}).items()
    }


@pytest.mark.parametrize(("factory", "d"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_round_trip_gives_identical_covariance(factory, d):
    original = _randomised(factory, seed=0)
    spec = kernel_to_spec(original)

    text = json.dumps(spec, allow_nan=False)  # strict JSON: no NaN/Infinity
    assert json.loads(text) == spec

    rebuilt = kernel_from_spec(json.loads(text)).double()
    assert type(rebuilt) is type(original)
    assert kernel_to_spec(rebuilt) == spec
    assert _constraints(rebuilt) == _constraints(original)
    assert [n for n, _ in rebuilt.named_parameters()] == [n for n, _ in original.named_parameters()]

    rebuilt.load_state_dict(original.state_dict(), strict=True)
    x1, x2 = _inputs(d, seed=1)
    with torch.no_grad():
        expected = original(x1, x2).to_dense()
        got = rebuilt(x1, x2).to_dense()
        assert got.dtype == torch.float64
        assert got.shape == expected.shape
        assert torch.equal(got, expected)
        assert torch.equal(rebuilt(x1, diag=True), original(x1, diag=True))


def test_batch_shape_and_ard_are_recorded():
    spec = kernel_to_spec(ScaleKernel(RBFKernel(batch_shape=B3, ard_num_dims=2), batch_shape=B3))
    assert spec["args"] == {"batch_shape": [3]}
    assert spec["children"][0]["args"] == {"batch_shape": [3], "ard_num_dims": 2}
    rebuilt = kernel_from_spec(spec)
    assert rebuilt.batch_shape == B3
    assert rebuilt.base_kernel.ard_num_dims == 2
    assert rebuilt.base_kernel.lengthscale.shape == (3, 1, 2)


@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5])
def test_matern_nu_is_recorded(nu):
    spec = kernel_to_spec(MaternKernel(nu=nu))
    assert spec["args"]["nu"] == nu
    assert kernel_from_spec(spec).nu == nu


def test_spec_is_plain_data():
    spec = kernel_to_spec(ScaleKernel(RBFKernel(lengthscale_constraint=Interval(0.1, 10.0))))
    assert spec["type"] == "ScaleKernel"
    assert spec["children"][0]["type"] == "RBFKernel"
    name, low, high = spec["children"][0]["constraints"]["raw_lengthscale_constraint"]
    assert name == "Interval"
    assert low == pytest.approx(0.1)
    assert high == pytest.approx(10.0)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"type": "NoSuchKernel", "args": {}}, id="unknown-type"),
        pytest.param(
            {"type": "ScaleKernel", "args": {}, "children": [{"type": "NoSuchKernel"}]},
            id="unknown-child",
        ),
        pytest.param({"type": "SpectralMixtureKernel", "args": {}}, id="unsupported-type"),
        pytest.param({"args": {}}, id="no-type"),
        pytest.param(
            {"type": "RBFKernel", "constraints": {"raw_lengthscale_constraint": ["Sigmoid", 0, 1]}},
            id="unknown-constraint",
        ),
        pytest.param(
            {"type": "RBFKernel", "constraints": {"raw_nothing_constraint": ["Positive", 0, None]}},
            id="unknown-parameter",
        ),
        pytest.param({"type": "MaternKernel", "args": {"nu": "x"}}, id="bad-arg"),
        pytest.param({"type": "RBFKernel", "constraints": []}, id="constraints-not-a-dict"),
        pytest.param({"type": "RBFKernel", "args": {"batch_shape": "x"}}, id="bad-batch-shape"),
        pytest.param(None, id="none"),
        pytest.param(["RBFKernel"], id="list"),
    ],
)
def test_invalid_spec_raises_model_file_error(spec):
    with pytest.raises(ModelFileError):
        kernel_from_spec(spec)


def test_unknown_type_message_names_it():
    with pytest.raises(ModelFileError, match="NoSuchKernel"):
        kernel_from_spec({"type": "NoSuchKernel", "args": {}})


@pytest.mark.parametrize(
    "kernel",
    [
        pytest.param(SpectralMixtureKernel(num_mixtures=2), id="spectral-mixture"),
        pytest.param(ScaleKernel(SpectralMixtureKernel(num_mixtures=2)), id="nested"),
        pytest.param(RBFKernel() + SpectralMixtureKernel(num_mixtures=2), id="in-sum"),
        pytest.param(type("MyRBF", (RBFKernel,), {})(), id="unregistered-subclass"),
    ],
)
def test_unsupported_kernel_raises_type_error(kernel):
    with pytest.raises(TypeError, match="register_kernel"):
        kernel_to_spec(kernel)


def test_registered_kernel_round_trips():
    class ShiftedRBF(RBFKernel):
        def __init__(self, shift: float = 0.0, **kwargs):
            super().__init__(**kwargs)
            self.shift = shift

        def get_config(self):
            return {"shift": self.shift}

    try:
        assert register_kernel(ShiftedRBF) is ShiftedRBF
        spec = json.loads(json.dumps(kernel_to_spec(ShiftedRBF(shift=1.5))))
        rebuilt = kernel_from_spec(spec)
        assert type(rebuilt) is ShiftedRBF
        assert rebuilt.shift == 1.5
    finally:
        spec_module._KERNELS.pop("ShiftedRBF", None)
