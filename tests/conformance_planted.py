"""Planted wrong implementations of M2PO for the conformance tests: each is a realistic mistake.

Each one is built from the package's own pieces with exactly one thing changed, and must make
``m2po conformance check`` exit non-zero. ``correct_m2po`` is the unchanged loss, as a plain function
with the public signature (the ``module:function`` target kind).
"""

from __future__ import annotations

import torch

from m2po.conformance.adapters import Adapter, LossCall
from m2po.losses import get_policy_loss, m2po_mask

_M2PO = get_policy_loss("m2po")
_GRPO = get_policy_loss("grpo")

#: the correct loss behind the public signature (minibatch cases run as one call)
correct_m2po = _M2PO


class PerMicrobatchMask(Adapter):
    """Mistake 1: the engine splits the mini-batch into micro-batches and lets every micro-batch compute
    its own mask (no ``keep_mask``), although the case asks for one mask over the mini-batch."""

    name = "planted:per-microbatch-mask"
    claims = "m2po"

    def __call__(self, call: LossCall):
        return _M2PO(call.log_prob, call.old_log_prob, call.advantages, call.response_mask, **call.common_kwargs())


def kept_denominator(log_prob, old_log_prob, advantages, response_mask, tau=0.04, **kw):
    """Mistake 2: the token mean divides by the kept tokens instead of all response tokens."""
    keep = m2po_mask(log_prob, old_log_prob, advantages, response_mask, tau)
    kept = float((keep & response_mask.bool()).sum().clamp(min=1))
    kw.pop("global_token_count", None)
    return _M2PO(
        log_prob, old_log_prob, advantages, response_mask, tau=tau, keep_mask=keep, global_token_count=kept, **kw
    )


def all_tokens_mask(log_prob, old_log_prob, advantages, response_mask, tau=0.04, **kw):
    """Mistake 3: Algorithm 1 over every response token (trust region ignored): every token is made a
    trust-region token by giving the mask an advantage of the sign of its log-ratio."""
    sign = torch.sign(log_prob.detach().float() - old_log_prob.float())
    keep = m2po_mask(log_prob, old_log_prob, sign, response_mask, tau)
    return _M2PO(log_prob, old_log_prob, advantages, response_mask, tau=tau, keep_mask=keep, **kw)


def clip_not_mask(log_prob, old_log_prob, advantages, response_mask, tau=0.04, **kw):
    """Mistake 4: Algorithm 1's decision turned into PPO clip bounds [e^-t, e^t] (t = the largest kept
    |log r| in the trust region) instead of masking the removed tokens."""
    keep = m2po_mask(log_prob, old_log_prob, advantages, response_mask, tau)
    x = log_prob.detach().float() - old_log_prob.float()
    adv = advantages.float()
    tr = response_mask.bool() & (((adv > 0) & (x > 0)) | ((adv < 0) & (x < 0)))
    t = float(torch.where(tr & keep, x.abs(), torch.zeros_like(x)).max())
    low, high = 1 - float(torch.exp(torch.tensor(-t))), float(torch.exp(torch.tensor(t))) - 1
    return _GRPO(log_prob, old_log_prob, advantages, response_mask, clip_low=low, clip_high=high, **kw)


def flipped_trust_region(log_prob, old_log_prob, advantages, response_mask, tau=0.04, **kw):
    """Mistake 5: the trust-region condition with its sign flipped, (A>0, r<1) or (A<0, r>1)."""
    keep = m2po_mask(log_prob, old_log_prob, -advantages, response_mask, tau)
    return _M2PO(log_prob, old_log_prob, advantages, response_mask, tau=tau, keep_mask=keep, **kw)
