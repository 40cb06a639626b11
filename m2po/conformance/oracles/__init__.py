"""Independent oracles for the conformance vectors and the test-suite: literal loops from the papers.

Nothing here imports ``m2po.losses``: the vectors' expected values, and the tests of ``m2po.losses``, are
computed by these loops, never by the implementation under test.
"""

from .algorithm1 import greedy_algorithm1, greedy_mask_tensor, is_valid_maximal_prefix, trust_region, well_separated
from .inputs import Rows, compute_dtype, flat_bools, flat_floats, flat_log_ratio, rows_from_tensors, select_rows
from .losses import agg_oracle, aggregation_weights
from .released import RELEASED_EPS_HIGH_UNCONSTRAINED, RELEASED_EPS_LOW_UNCONSTRAINED, released_bounds, released_loop

__all__ = [
    "RELEASED_EPS_HIGH_UNCONSTRAINED",
    "RELEASED_EPS_LOW_UNCONSTRAINED",
    "Rows",
    "agg_oracle",
    "aggregation_weights",
    "compute_dtype",
    "flat_bools",
    "flat_floats",
    "flat_log_ratio",
    "greedy_algorithm1",
    "greedy_mask_tensor",
    "is_valid_maximal_prefix",
    "released_bounds",
    "released_loop",
    "rows_from_tensors",
    "select_rows",
    "trust_region",
    "well_separated",
]
