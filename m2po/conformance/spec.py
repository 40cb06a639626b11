"""What a conformance case is: inputs, loss parameters, how the loss is called, and the tolerances.

See docs/conformance.md for the on-disk schema. Everything a checker needs is in the vectors; nothing here
imports ``m2po.losses``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: the ``format`` field of index.json
FORMAT = "m2po-conformance"
#: bumped whenever a field changes meaning; checkers refuse other versions
FORMAT_VERSION = 1

#: how a case's loss is called (docs/conformance.md, "Scopes")
SCOPES = ("call", "microbatch", "minibatch")

#: input tensors in the order of the public signature, then the optional ones
REQUIRED_INPUTS = ("log_prob", "old_log_prob", "advantages", "response_mask")
OPTIONAL_INPUTS = ("proximal_log_prob", "rollout_log_prob")

#: tolerances per input dtype. A value passes when |got − want| <= atol·scale + rtol·|want|, where scale is
#: the case's loss_scale (Σ|weighted terms|) for losses and max|want| for gradients. float64 allows the
#: usual +1e-8 guards in denominators; bfloat16 allows the gradient being rounded to the input dtype.
TOLERANCES = {
    "float64": {"rtol": 1e-7, "atol": 1e-9},
    "float32": {"rtol": 2e-5, "atol": 2e-6},
    "bfloat16": {"rtol": 1e-2, "atol": 2e-3},
}

DTYPE_NAMES = {torch.float64: "float64", torch.float32: "float32", torch.bfloat16: "bfloat16"}


@dataclass
class CaseSpec:
    """One conformance case before its expected values are computed.

    ``params`` are the loss's own keyword parameters, always explicit (no reliance on defaults).
    ``split`` gives the rows of each micro-batch (None: one call over every row). ``scope`` says where
    a mini-batch-wide quantity (M2PO's keep-mask) is computed: ``call`` (one call, nothing to choose),
    ``microbatch`` (per micro-batch call) or ``minibatch`` (over every row of the split).
    """

    name: str
    loss: str
    description: str
    inputs: dict[str, torch.Tensor]
    params: dict[str, object] = field(default_factory=dict)
    loss_agg_mode: str = "token-mean"
    scope: str = "call"
    split: list[int] | None = None
    tis_cap: float | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        missing = [k for k in REQUIRED_INPUTS if k not in self.inputs]
        if missing:
            raise ValueError(f"case {self.name!r}: missing inputs {missing}")
        if self.scope not in SCOPES:
            raise ValueError(f"case {self.name!r}: scope must be one of {SCOPES}, got {self.scope!r}")
        rows = self.inputs["log_prob"].shape[0]
        if self.split is not None and sum(self.split) != rows:
            raise ValueError(f"case {self.name!r}: split {self.split} does not add up to {rows} rows")
        if self.scope != "call" and (self.split is None or len(self.split) < 2):
            raise ValueError(f"case {self.name!r}: scope {self.scope!r} needs a split into >= 2 micro-batches")
        if ("rollout_log_prob" in self.inputs) != (self.tis_cap is not None):
            raise ValueError(f"case {self.name!r}: TIS needs both rollout_log_prob and tis_cap")

    @property
    def dtype(self) -> str:
        return DTYPE_NAMES[self.inputs["log_prob"].dtype]

    @property
    def calls(self) -> list[tuple[int, int]]:
        """Row ranges ``[start, stop)`` of the loss calls."""
        sizes = self.split or [self.inputs["log_prob"].shape[0]]
        out, start = [], 0
        for n in sizes:
            out.append((start, start + n))
            start += n
        return out
