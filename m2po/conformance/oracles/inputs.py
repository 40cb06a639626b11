"""Input conversion for the oracles: tensors in, Python floats out.

The only tensor arithmetic an oracle does is the contract's input preprocessing (docs/losses.md):
``log r = log_prob - old_log_prob`` in the compute dtype — float64 when both log-prob inputs are float64,
float32 otherwise (bf16/fp16 are upcast first). Everything after that is float64 arithmetic on lists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def compute_dtype(log_prob: torch.Tensor, old_log_prob: torch.Tensor) -> torch.dtype:
    """Contract: float64 when both log-prob inputs are float64, otherwise float32."""
    if log_prob.dtype == torch.float64 and old_log_prob.dtype == torch.float64:
        return torch.float64
    return torch.float32


def flat_log_ratio(log_prob: torch.Tensor, old_log_prob: torch.Tensor) -> list[float]:
    """log r = log_prob - old_log_prob in the compute dtype, flattened row-major, as Python floats."""
    cd = compute_dtype(log_prob, old_log_prob)
    lr = log_prob.detach().to(cd) - old_log_prob.detach().to(cd)
    return [float(x) for x in lr.reshape(-1).tolist()]


def flat_floats(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x.detach().to(torch.float64).reshape(-1).tolist()]


def flat_bools(x: torch.Tensor) -> list[bool]:
    return [bool(v) for v in x.detach().reshape(-1).tolist()]


def rows_of(flat: list, width: int) -> list[list]:
    return [flat[i : i + width] for i in range(0, len(flat), width)]


@dataclass
class Rows:
    """One loss call's inputs as nested lists ``[row][token]`` (padding: log r 0, A 0, mask False).

    ``lr`` is log π_θ − log π_behav, ``lp`` log π_θ (both in the compute dtype), ``adv`` the advantages;
    ``prox_lr`` is log π_θ − log π_prox and ``behav_lr`` log π_prox − log π_behav when a proximal policy
    is given; ``tis_lr`` is log π_behav − log π_rollout when rollout log-probs are given (TIS).
    """

    lr: list[list[float]]
    lp: list[list[float]]
    adv: list[list[float]]
    mask: list[list[bool]]
    prox_lr: list[list[float]] | None = None
    behav_lr: list[list[float]] | None = None
    tis_lr: list[list[float]] | None = None

    @property
    def width(self) -> int:
        return len(self.mask[0]) if self.mask else 0

    def tokens(self):
        """(row, col) of every response token, row-major."""
        for i, row in enumerate(self.mask):
            for j, m in enumerate(row):
                if m:
                    yield i, j


def _diff(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> list[float]:
    return [float(x) for x in (a.detach().to(dtype) - b.detach().to(dtype)).reshape(-1).tolist()]


def rows_from_tensors(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    proximal_log_prob: torch.Tensor | None = None,
    rollout_log_prob: torch.Tensor | None = None,
) -> Rows:
    """Convert ``[B, L]`` tensors into :class:`Rows`; padding values are replaced, never read."""
    cd = compute_dtype(log_prob, old_log_prob)
    width = log_prob.shape[-1]
    mask = flat_bools(response_mask.bool())

    def clean(values: list[float]) -> list[list[float]]:
        return rows_of([v if m else 0.0 for v, m in zip(values, mask, strict=True)], width)

    rows = Rows(
        lr=clean(_diff(log_prob, old_log_prob, cd)),
        lp=clean([float(x) for x in log_prob.detach().to(cd).reshape(-1).tolist()]),
        adv=clean([float(x) for x in advantages.detach().to(cd).reshape(-1).tolist()]),
        mask=rows_of(mask, width),
    )
    if proximal_log_prob is not None:
        rows.prox_lr = clean(_diff(log_prob, proximal_log_prob, cd))
        rows.behav_lr = clean(_diff(proximal_log_prob, old_log_prob, cd))
    if rollout_log_prob is not None:
        rows.tis_lr = clean(_diff(old_log_prob, rollout_log_prob, cd))
    return rows


def select_rows(rows: Rows, start: int, stop: int) -> Rows:
    """The rows ``start:stop`` of a call (a micro-batch of a mini-batch)."""

    def cut(x):
        return None if x is None else x[start:stop]

    return Rows(
        lr=rows.lr[start:stop],
        lp=rows.lp[start:stop],
        adv=rows.adv[start:stop],
        mask=rows.mask[start:stop],
        prox_lr=cut(rows.prox_lr),
        behav_lr=cut(rows.behav_lr),
        tis_lr=cut(rows.tis_lr),
    )
