"""The policy losses by name, and the facts about them that code without torch needs.

``m2po.losses`` is the registry (it imports torch); the Snakefile's grid, the run-id parser of the
analysis and the verl launcher only need the names and which losses take τ, so they read them here,
a module that imports nothing. Tests check that every value equals the registry's:
``LOSS_NAMES == tuple(available_losses())`` and ``TAU_LOSSES`` lists the losses whose
``loss_info(name).tau_param`` is set.
"""

from __future__ import annotations

__all__ = ["LOSS_NAMES", "PAPER_TAU", "TAU_LOSSES"]

#: every registered loss, sorted (as ``m2po.losses.available_losses()`` returns them)
LOSS_NAMES = ("cispo", "decoupled_ppo", "gppo", "grpo", "grpo_notr", "gspo", "m2po", "m2po_released", "topr")

#: losses with an M2 budget τ (the registry's ``tau_param``); for the others τ means nothing
TAU_LOSSES = ("m2po", "m2po_released")

#: τ of Algorithm 1 in every run of the paper (arXiv 2510.01161, §5.2; Fig. 8 sweeps 0-0.16)
PAPER_TAU = 0.04
