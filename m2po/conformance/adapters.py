"""How the checker calls a loss: the adapter protocol and the built-in targets.

The checker drives every case the same way: for each micro-batch call of the case it makes a fresh leaf
``log_prob`` (the call's rows, ``requires_grad``), hands a :class:`LossCall` to the adapter, and
backpropagates the returned loss. An adapter turns a :class:`LossCall` into whatever call convention
the loss under test has. Targets (docs/conformance.md):

* ``m2po:NAME`` — :class:`RegistryAdapter`, our registry (imports ``m2po.losses``);
* ``module:function`` or ``path/to/file.py:function`` — :class:`SignatureAdapter` around a function with
  the public signature ``fn(log_prob, old_log_prob, advantages, response_mask, **params) -> (loss,
  metrics)``; or, when the object is an :class:`Adapter` (instance or subclass), that adapter;
* ``verl:NAME`` — a loss of verl's registry called as verl calls it (:mod:`.verl_adapter`).

Turning a ``--target`` string into one of them is :func:`m2po.conformance.targets.resolve_target`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class Unsupported(Exception):
    """Raised by an adapter for a case its loss cannot express (the case is reported as skipped)."""


@dataclass
class LossCall:
    """One loss call of a case. Tensors are this call's rows; ``log_prob`` is a leaf that requires grad.

    ``global_token_count`` / ``global_seq_count`` are the mini-batch's response tokens / non-empty rows
    when the case is split into several calls (None for a single call: the call's own counts).
    ``minibatch`` holds every input of the whole mini-batch (detached) and ``rows`` this call's rows in
    it: an adapter that computes a mini-batch-wide quantity (M2PO's keep-mask in the ``minibatch`` scope)
    reads them.
    """

    case: str
    loss: str
    params: dict
    log_prob: torch.Tensor
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    response_mask: torch.Tensor
    loss_agg_mode: str
    scope: str
    rows: tuple[int, int]
    minibatch: dict[str, torch.Tensor]
    proximal_log_prob: torch.Tensor | None = None
    rollout_log_prob: torch.Tensor | None = None
    tis_cap: float | None = None
    global_token_count: float | None = None
    global_seq_count: float | None = None

    def common_kwargs(self) -> dict:
        """Keyword arguments of our public signature besides the four tensors: loss params, aggregation,
        global counts, proximal log-probs and TIS (only those that are set)."""
        kw = dict(self.params)
        kw["loss_agg_mode"] = self.loss_agg_mode
        if self.global_token_count is not None:
            kw["global_token_count"] = self.global_token_count
        if self.global_seq_count is not None:
            kw["global_seq_count"] = self.global_seq_count
        if self.proximal_log_prob is not None:
            kw["proximal_log_prob"] = self.proximal_log_prob
        if self.rollout_log_prob is not None:
            kw["rollout_log_prob"] = self.rollout_log_prob
            kw["tis_cap"] = self.tis_cap
        return kw


class Adapter:
    """Base class of the adapter protocol: subclass it and implement :meth:`__call__`.

    ``__call__(call)`` returns the call's loss (a 0-dim tensor differentiable w.r.t. ``call.log_prob``),
    or ``(loss, metrics)``; it raises :class:`Unsupported` for a case the loss cannot express.
    ``minibatch_in_one_call``: when True the checker runs ``minibatch``-scope cases as one call over the
    whole mini-batch (right for a function that sees one call); when False (default) it calls once per
    micro-batch and the adapter must use ``call.minibatch`` for mini-batch-wide quantities.
    ``claims``: the loss whose cases this adapter runs when ``--cases`` is not given (None: required).
    """

    name = "adapter"
    claims: str | None = None
    minibatch_in_one_call = False

    def __call__(self, call: LossCall):  # pragma: no cover - the protocol
        raise NotImplementedError


class SignatureAdapter(Adapter):
    """A function with the public signature ``fn(log_prob, old_log_prob, advantages, response_mask,
    **params) -> (loss, metrics)``; it sees one call, so ``minibatch`` cases run as one call."""

    minibatch_in_one_call = True

    def __init__(self, fn, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", repr(fn))

    def __call__(self, call: LossCall):
        return self.fn(call.log_prob, call.old_log_prob, call.advantages, call.response_mask, **call.common_kwargs())


class RegistryAdapter(Adapter):
    """``m2po:NAME``: our registry, called as the CPU engine and the verl plugin call it. For the
    ``minibatch`` scope a loss with a batch-level mask gets that mask over the whole mini-batch
    (``m2po_mask`` for ``m2po``), sliced to the call's rows."""

    def __init__(self, loss_name: str) -> None:
        from m2po.losses import get_policy_loss, loss_info
        from m2po.losses.registry import KEEP_MASK_PARAM

        self.fn = get_policy_loss(loss_name)
        self.info = loss_info(loss_name)
        self.keep_mask_param = KEEP_MASK_PARAM
        self.name = f"m2po:{loss_name}"
        self.claims = loss_name

    def __call__(self, call: LossCall):
        kw = call.common_kwargs()
        if call.scope == "minibatch" and self.info.batch_mask is not None:
            mb = call.minibatch
            keep = self.info.batch_keep_mask(
                mb["log_prob"], mb["old_log_prob"], mb["advantages"], mb["response_mask"], kw
            )
            kw[self.keep_mask_param] = keep[call.rows[0] : call.rows[1]]
        return self.fn(call.log_prob, call.old_log_prob, call.advantages, call.response_mask, **kw)
