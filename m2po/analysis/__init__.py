"""Analysis of a results tree: load runs, aggregate over seeds, Table 1, the paper's claims, the report.

Figure scripts (``figures/``) and the report (:mod:`m2po.analysis.report`) read runs only through
this package, so every number is computed one way (conventions in :mod:`m2po.analysis.aggregate`).
"""

from .aggregate import Stat, accuracy, cell_stat, order_models, per_run_accuracy, seed_band, select, smooth, steady_mean
from .runs import DEFAULT_TAU, METHODS, RunMeta, RunTables, load_runs, parse_run_id, scan_runs

__all__ = [
    "DEFAULT_TAU",
    "METHODS",
    "RunMeta",
    "RunTables",
    "Stat",
    "accuracy",
    "cell_stat",
    "load_runs",
    "order_models",
    "parse_run_id",
    "per_run_accuracy",
    "scan_runs",
    "seed_band",
    "select",
    "smooth",
    "steady_mean",
]
