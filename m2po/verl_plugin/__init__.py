"""verl plugin: the M2PO paper's losses inside verl 0.9.1 (arXiv 2510.01161).

verl's ``__init__`` imports every ``verl.plugins`` entry point (ours: ``m2po = "m2po.verl_plugin"`` in
pyproject.toml), in the driver and in every Ray worker, and swallows import errors at debug level. So
registration happens here, at import time, and :data:`REGISTERED` records what it did.

Names. Every loss of ``m2po.losses.available_losses()`` is registered in
``verl.trainer.ppo.core_algos.POLICY_LOSS_REGISTRY`` under its own name (``grpo``, ``grpo_notr``,
``m2po``, ``m2po_released``, ``gspo``, ``cispo``, ``topr``, ``gppo``, ``decoupled_ppo``) and under a
namespaced alias ``m2po.<name>`` that no other plugin can shadow. verl registers its own ``gspo`` and
``cispo``: ours replace them under the plain names (so one ``loss_mode`` means the same objective in
both of this project's engines), and verl's originals stay available as ``verl.gspo`` / ``verl.cispo``.

Everything heavy (the trainer, workers, reward, launcher) lives in submodules imported on demand.
"""

from __future__ import annotations

from verl.trainer.ppo import core_algos

from m2po.losses import available_losses

from .adapter import keep_mask_context, make_verl_policy_loss
from .config import ALIAS_PREFIX, M2POPolicyLossConfig

__all__ = ["REGISTERED", "SHADOWED", "M2POPolicyLossConfig", "keep_mask_context", "register"]

#: verl loss name -> m2po.losses name, filled by :func:`register`
REGISTERED: dict[str, str] = {}
#: verl's own losses that ours replaced, kept under ``verl.<name>``
SHADOWED: list[str] = []


def register() -> dict[str, str]:
    """Register every ``m2po.losses`` loss in verl's registry (idempotent); returns :data:`REGISTERED`."""
    registry = core_algos.POLICY_LOSS_REGISTRY
    for name in available_losses():
        current = registry.get(name)
        if current is not None and not getattr(current, "_m2po_loss", False) and f"verl.{name}" not in registry:
            registry[f"verl.{name}"] = current
            SHADOWED.append(name)
        fn = make_verl_policy_loss(name)
        fn._m2po_loss = True  # type: ignore[attr-defined]
        for key in (name, f"{ALIAS_PREFIX}{name}"):
            core_algos.register_policy_loss(key)(fn)
            REGISTERED[key] = name
    return REGISTERED


register()
