"""``m2po conformance export --out DIR``: write every case with its expected values (docs/conformance.md).

Layout: ``DIR/index.json`` (written last) and ``DIR/cases/<loss>__<case>.safetensors`` holding the inputs
in their own dtype and the expected gradient (float64), keep-mask and ambiguous-token mask (bool), and
the gradient of each alternative reading. Expected values come from :mod:`m2po.conformance.expected`
(the literal oracles), never from ``m2po.losses``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import m2po
from m2po.fileio import atomic_write_text

from .cases import all_cases
from .expected import Outcome, alternatives, oracle_outcome
from .spec import FORMAT, FORMAT_VERSION, OPTIONAL_INPUTS, REQUIRED_INPUTS, TOLERANCES, CaseSpec
from .tensorfile import save_tensors


def case_file(name: str) -> str:
    return f"cases/{name.replace('/', '__')}.safetensors"


def _f64(x: list[list[float]]) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def case_entry(spec: CaseSpec, expected: Outcome, alts: dict[str, tuple[str, Outcome]]) -> dict:
    """The case's index.json entry (tensors are referenced by name inside its file)."""
    return {
        "name": spec.name,
        "loss": spec.loss,
        "description": spec.description,
        "tags": list(spec.tags),
        "file": case_file(spec.name),
        "dtype": spec.dtype,
        "shape": list(spec.inputs["log_prob"].shape),
        "inputs": [k for k in REQUIRED_INPUTS + OPTIONAL_INPUTS if k in spec.inputs],
        "params": spec.params,
        "loss_agg_mode": spec.loss_agg_mode,
        "scope": spec.scope,
        "split": spec.split,
        "tis_cap": spec.tis_cap,
        "expected": {
            "loss": expected.loss,
            "call_losses": expected.call_losses,
            "loss_scale": expected.loss_scale,
            "grad": "expected_grad",
            "keep_mask": "expected_keep_mask",
            "ambiguous": "ambiguous",
        },
        "tolerance": TOLERANCES[spec.dtype],
        "alternatives": [
            {"name": n, "description": d, "loss": o.loss, "call_losses": o.call_losses, "grad": f"alt.{n}.grad"}
            for n, (d, o) in alts.items()
        ],
    }


def export(out: str | Path) -> dict:
    """Write every case to ``out``; returns the index."""
    out = Path(out)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    entries = []
    for spec in all_cases():
        expected = oracle_outcome(spec)
        alts = alternatives(spec, expected)
        tensors = {k: v for k, v in spec.inputs.items()}
        tensors["expected_grad"] = _f64(expected.grad)
        tensors["expected_keep_mask"] = torch.tensor(expected.keep, dtype=torch.bool)
        tensors["ambiguous"] = torch.tensor(expected.ambiguous, dtype=torch.bool)
        for name, (_, outcome) in alts.items():
            tensors[f"alt.{name}.grad"] = _f64(outcome.grad)
        save_tensors(tensors, out / case_file(spec.name), metadata={"case": spec.name})
        entries.append(case_entry(spec, expected, alts))
    index = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "generator": f"m2po {m2po.__version__} (m2po conformance export)",
        "tolerances": TOLERANCES,
        "cases": entries,
    }
    atomic_write_text(out / "index.json", json.dumps(index, indent=1) + "\n")
    return index
