"""Conformance suite: versioned test vectors for M2PO and its baselines, and a checker any framework can run.

``m2po conformance export --out DIR`` writes the vectors (``index.json`` + one safetensors file per case),
with expected keep-masks, losses and gradients computed by the literal oracles of
:mod:`m2po.conformance.oracles` — never by ``m2po.losses``. ``m2po conformance check --vectors DIR
--target TARGET`` runs a loss against them (docs/conformance.md). The checker needs only torch (and verl
for ``verl:`` targets); ``python -m m2po.conformance`` runs it without the rest of the package's stages.
"""

from .spec import FORMAT, FORMAT_VERSION, TOLERANCES, CaseSpec

__all__ = ["FORMAT", "FORMAT_VERSION", "TOLERANCES", "CaseSpec"]
