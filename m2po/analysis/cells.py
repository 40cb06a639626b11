"""Per-cell statistics of one study (a cell = model × method × staleness × τ), computed once and shared by
the claims and the report's sentences. Conventions: :mod:`m2po.analysis.aggregate`."""

from __future__ import annotations

import math

import pandas as pd

from .aggregate import Stat, accuracy, cell_stat, per_run_accuracy, select, steady_mean
from .runs import RunTables


class Cells:
    """Accuracy and per-update-metric summaries by cell, restricted to ``seeds`` when given."""

    def __init__(self, tables: RunTables, seeds: list[int] | None = None) -> None:
        self.tables = tables
        self.acc_table = accuracy(tables.evals, tables.benchmarks)
        self.per_run = per_run_accuracy(self.acc_table)
        self.seeds = seeds
        self.max_update = int(tables.updates["update"].max()) + 1 if len(tables.updates) else 0
        self._steady: dict[str, pd.DataFrame] = {}

    def acc(self, model: str, method: str, s: int, what: str = "peak", tau: float | str = "default") -> Stat:
        """Peak (``what="peak"``), final or initial (``acc0``) accuracy of a cell, mean ± s.e. over seeds."""
        se = f"{what}_se" if what in ("peak", "final") else None
        return cell_stat(select(self.per_run, model, method, s, self.seeds, tau), what, se)

    def steady(self, model: str, method: str, s: int, value: str) -> Stat:
        """Mean of a per-update metric over the updates ≥ s of each run, then over seeds."""
        if value not in self._steady:
            ok = len(self.tables.updates) and value in self.tables.updates.columns
            self._steady[value] = steady_mean(self.tables.updates, value) if ok else pd.DataFrame()
        df = self._steady[value]
        if df.empty:
            return Stat(math.nan, math.nan, 0)
        return cell_stat(select(df, model, method, s, self.seeds), "mean", "se")

    def clipped(self, model: str, method: str, s: int) -> Stat:
        """Steady-state clipped/masked token fraction."""
        return self.steady(model, method, s, "clipped_frac")

    def last_quarter(self, model: str, method: str, s: int, value: str) -> Stat:
        """Mean of a per-update metric over the last quarter of each run's updates, then over seeds."""
        df = select(self.tables.updates, model, method, s, self.seeds)
        if df.empty or value not in df.columns:
            return Stat(math.nan, math.nan, 0)
        rows = []
        for _, g in df.groupby("run_id"):
            g = g.sort_values("update")
            rows.append({"v": float(g[value].iloc[-max(len(g) // 4, 1) :].mean())})
        return cell_stat(pd.DataFrame(rows), "v")

    def staleness_levels(self, model: str, method: str) -> list[int]:
        """Staleness values with at least one evaluated run of (model, method), ascending."""
        cell = select(self.per_run, model, method, None, self.seeds)
        return sorted(int(s) for s in cell["staleness"].unique())

    def taus(self, model: str, method: str, s: int) -> list[float]:
        """τ values with an evaluated run of the cell (the τ sweep), ascending."""
        cell = select(self.per_run, model, method, s, self.seeds, tau="any")
        return sorted(float(t) for t in cell["tau"].dropna().unique())
