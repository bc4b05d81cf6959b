"""Tasks on irregular grids: each task's points as padded index maps into the union grid.

A ``DataArray(task, time)`` with NaN for "not observed" is already on the union grid
:math:`t = \\cup_i t_i` (P points). Task i observes :math:`N_i` of them; tasks are padded to
:math:`N = \\max_i N_i` with a validity mask, so per-task work batches over tasks (padded
entries get identity covariance rows and zero data, which leaves every quantity exact).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from workbench.errors import EmptyDataError

__all__ = ["TaskGrid", "grid_patterns", "scatter_blocks", "task_grid"]


class TaskGrid(NamedTuple):
    x: torch.Tensor  # shape: (P,) union grid
    index: torch.Tensor  # shape: (M, N) grid index of each task point (0 where padded)
    valid: torch.Tensor  # shape: (M, N) bool
    y: torch.Tensor  # shape: (M, N) values (0 where padded)

    @property
    def t(self) -> torch.Tensor:
        """Inputs of the task points, shape (M, N) (the grid's first input where padded)."""
        return self.x[self.index]

    @property
    def pair_valid(self) -> torch.Tensor:
        """(M, N, N) True where both points are observed."""
        return self.valid[:, :, None] & self.valid[:, None, :]

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """(..., P) -> (..., M, N) values at each task's points."""
        return values[..., self.index]

    def gather_blocks(self, matrices: torch.Tensor) -> torch.Tensor:
        """(..., P, P) -> (..., M, N, N) each task's block."""
        return matrices[..., self.index[:, :, None], self.index[:, None, :]]


def task_grid(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, task_names: list) -> TaskGrid:
    """Index maps from values ``y`` and ``mask`` (M, P) on the union grid ``x`` (P,)."""
    counts = mask.sum(1)
    empty = [str(task_names[i]) for i in range(len(counts)) if int(counts[i]) == 0]
    if empty:
        raise EmptyDataError(f"expected observations in every task, got none in task(s) {empty}")
    N = int(counts.max())
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # observed first, in order
    index = order[:, :N]
    valid = torch.arange(N, device=mask.device)[None, :] < counts[:, None]
    index = torch.where(valid, index, 0)
    values = torch.where(valid, torch.gather(y, 1, index), 0.0)
    return TaskGrid(x, index, valid, values)


def scatter_blocks(
    grid: TaskGrid,
    blocks: torch.Tensor,  # shape: (K, M, N, N) weighted task blocks (zero where padded)
    vectors: torch.Tensor,  # shape: (K, M, N)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the task blocks into (K, P, P) matrices and vectors into (K, P) on the union grid."""
    K, P = blocks.shape[0], grid.x.shape[0]
    M, N = grid.index.shape
    rows = grid.index[:, :, None].expand(M, N, N).reshape(-1)
    cols = grid.index[:, None, :].expand(M, N, N).reshape(-1)
    flat = torch.zeros(K, P * P, dtype=blocks.dtype, device=blocks.device)
    flat.index_add_(1, rows * P + cols, blocks.reshape(K, -1))
    vec = torch.zeros(K, P, dtype=vectors.dtype, device=vectors.device)
    vec.index_add_(1, grid.index.reshape(-1), vectors.reshape(K, -1))
    return flat.reshape(K, P, P), vec


def grid_patterns(grid: TaskGrid) -> tuple[TaskGrid, torch.Tensor, torch.Tensor]:
    r"""Tasks observed at the same inputs, grouped: with shared hyper-parameters they share
    :math:`\Psi`, so M-step objectives need one factorisation per pattern, not per task.

    Returns the grid of the G distinct patterns (``y`` of each pattern's first task), the
    pattern of every task (M,) and the number of tasks per pattern (G,).
    """
    key = torch.where(grid.valid, grid.index, -1)
    unique, inverse, counts = torch.unique(key, dim=0, return_inverse=True, return_counts=True)
    device = grid.index.device
    first = torch.full((unique.shape[0],), grid.index.shape[0], dtype=torch.long, device=device)
    positions = torch.arange(inverse.shape[0], device=device)
    first.scatter_reduce_(0, inverse, positions, reduce="amin")
    valid = unique >= 0
    patterns = TaskGrid(grid.x, torch.where(valid, unique, 0), valid, grid.y[first])
    return patterns, inverse, counts
