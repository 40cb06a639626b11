"""Expected outputs of a case, from the literal oracles only (never from ``m2po.losses``).

:func:`oracle_outcome` runs one loss over a case's micro-batch calls: the per-token oracle of the loss,
TIS, the aggregation weights (global counts when the case is split), and for M2PO the keep-mask of
Algorithm 1 in the case's scope. :class:`Semantics` switches on the *other* readings of M2PO that the
vectors separate — a mask over every token, per micro-batch, kept-token denominator, clip instead of
mask — and :func:`alternatives` lists, for each case, the readings whose outputs differ from the
expected ones, so that a checker can say which reading a failing implementation follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .oracles import losses as lo
from .oracles.algorithm1 import greedy_algorithm1
from .oracles.inputs import Rows, rows_from_tensors, select_rows
from .oracles.released import released_bounds
from .spec import CaseSpec


@dataclass(frozen=True)
class Semantics:
    """A reading of M2PO: ``over`` which tokens Algorithm 1 runs (``trust_region`` or ``all``), ``scope``
    (None: the case's), ``denominator`` (``all`` response tokens, or only the ``kept`` ones) and
    ``action`` on removed tokens (``mask``: term 0; ``clip``: the PPO-clipped constant at the kept range)."""

    over: str = "trust_region"
    scope: str | None = None
    denominator: str = "all"
    action: str = "mask"


PAPER = Semantics()


@dataclass
class Outcome:
    """Per-call losses, gradient w.r.t. log_prob, keep-mask, tokens on a clip boundary, Σ|weighted terms|."""

    call_losses: list[float]
    grad: list[list[float]]
    keep: list[list[bool]]
    ambiguous: list[list[bool]]
    loss_scale: float

    @property
    def loss(self) -> float:
        return math.fsum(self.call_losses)


def _flat(x: list[list]) -> list:
    return [v for row in x for v in row]


def _m2po_keep(rows: Rows, spec: CaseSpec, sem: Semantics) -> list[list[bool]]:
    """Algorithm 1's keep-mask over the whole mini-batch or per call, as ``[row][token]``."""
    tau = float(spec.params["tau"])
    scope = sem.scope or spec.scope
    ranges = [(0, len(rows.mask))] if scope in ("minibatch", "call") else spec.calls
    keep: list[list[bool]] = []
    for start, stop in ranges:
        part = select_rows(rows, start, stop)
        flat = greedy_algorithm1(_flat(part.lr), _flat(part.adv), _flat(part.mask), tau, over=sem.over)
        keep += [flat[i : i + rows.width] for i in range(0, len(flat), rows.width)]
    return keep


def _clip_range(rows: Rows, keep: list[list[bool]]) -> tuple[float, float]:
    """[e^−t, e^t] with t the largest |log r| Algorithm 1 kept among the trust-region tokens."""
    t = 0.0
    for i, j in rows.tokens():
        a, x = rows.adv[i][j], rows.lr[i][j]
        if keep[i][j] and ((a > 0 and x > 0) or (a < 0 and x < 0)):
            t = max(t, abs(x))
    return math.exp(-t), math.exp(t)


def _token_terms(loss: str, rows: Rows, params: dict, spec: CaseSpec, start: int, stop: int, m2po_keep, clip):
    p = params
    if loss == "grpo":
        return lo.ppo_clip(rows, 1 - p["clip_low"], 1 + p["clip_high"], p.get("clip_c"))
    if loss == "grpo_notr":
        return lo.masked_ratio(rows, [[True] * rows.width for _ in rows.mask])
    if loss == "m2po":
        return lo.masked_ratio(rows, m2po_keep[start:stop], clip)
    if loss == "m2po_released":
        t = {k: v[start:stop] for k, v in spec.inputs.items()}
        _, low, high = released_bounds(
            t["log_prob"], t["old_log_prob"], t["advantages"], t["response_mask"], float(p["tau"]),
            p.get("floor_low"), p.get("floor_high"),
        )  # fmt: skip
        return lo.ppo_clip(rows, low, high)
    if loss == "gspo":
        return lo.gspo(rows, p["clip_low"], p["clip_high"])
    if loss == "cispo":
        return lo.cispo(rows, p["clip_low"], p["clip_high"])
    if loss == "topr":
        return lo.topr(rows, p["ratio_level"])
    if loss == "gppo":
        return lo.gppo(rows, p["clip_low"], p["clip_high"])
    if loss == "decoupled_ppo":
        return lo.decoupled_ppo(rows, p["clip_low"], p["clip_high"], p.get("behav_weight_cap"))
    raise KeyError(f"no oracle for loss {loss!r}")


def oracle_outcome(spec: CaseSpec, loss: str | None = None, params: dict | None = None, sem: Semantics = PAPER):
    """Loss of every call, gradient w.r.t. log_prob and keep-mask of ``spec`` (or of another loss/params
    on the same inputs), all from the oracles."""
    loss = loss or spec.loss
    params = spec.params if params is None else params
    t = spec.inputs
    rows = rows_from_tensors(
        t["log_prob"], t["old_log_prob"], t["advantages"], t["response_mask"],
        t.get("proximal_log_prob"), t.get("rollout_log_prob"),
    )  # fmt: skip
    split = len(spec.calls) > 1
    n_tok = sum(1 for row in rows.mask for m in row if m)
    n_rows = sum(1 for row in rows.mask if any(row))
    keep_all = _m2po_keep(rows, spec, sem) if loss == "m2po" else None
    clip = _clip_range(rows, keep_all) if loss == "m2po" and sem.action == "clip" else None
    if sem.denominator == "kept" and spec.loss_agg_mode != "token-mean":
        raise ValueError("the kept-token denominator is defined for token-mean only")
    call_losses, grad, keep, ambiguous, scale = [], [], [], [], 0.0
    for start, stop in spec.calls:
        part = select_rows(rows, start, stop)
        term, dterm, kept, amb = _token_terms(loss, part, params, spec, start, stop, keep_all, clip)
        if spec.tis_cap is not None:
            w_tis = lo.tis_weights(part, spec.tis_cap)
            term = [[x * w for x, w in zip(r1, r2)] for r1, r2 in zip(term, w_tis)]
            dterm = [[x * w for x, w in zip(r1, r2)] for r1, r2 in zip(dterm, w_tis)]
        if sem.denominator == "kept":  # a mean over the call's kept tokens, weighted by the call's token share
            n_kept = sum(1 for i, j in part.tokens() if keep_all[start + i][j])
            share = sum(1 for _ in part.tokens()) / n_tok
            weights = [
                [w * share for w in row] for row in lo.aggregation_weights(part.mask, spec.loss_agg_mode, n_kept or 1)
            ]
        else:
            weights = lo.aggregation_weights(
                part.mask, spec.loss_agg_mode, n_tok if split else None, n_rows if split else None
            )
        pairs = [(w * x, w * g) for wr, tr, gr in zip(weights, term, dterm) for w, x, g in zip(wr, tr, gr)]
        call_losses.append(math.fsum(x for x, _ in pairs))
        scale += math.fsum(abs(x) for x, _ in pairs)
        grad += [[w * g for w, g in zip(wr, gr)] for wr, gr in zip(weights, dterm)]
        keep += kept
        ambiguous += amb
    return Outcome(call_losses, grad, keep, ambiguous, scale)


def _m2po_alternatives(spec: CaseSpec) -> dict[str, str]:
    """The other readings of M2PO, by name (docs/conformance.md, "Alternatives")."""
    alts = {
        "all_tokens_mask": "Algorithm 1 over every response token, not only the trust region",
        "kept_denominator": "each call a mean over its kept tokens only (masked tokens leave the denominator)",
        "all_tokens_kept_denominator": "Algorithm 1 per call over every response token, each call a mean over its "
        "kept tokens (AReaL's reading)",
        "clip_not_mask": "removed tokens clipped to the kept range [e^-t, e^t] instead of masked",
        "released": "the authors' released rule (winsorised threshold -> PPO clip) per call",
        "no_trust_region": "no mask at all (grpo_notr)",
    }
    if spec.scope == "minibatch":
        alts["microbatch_mask"] = "Algorithm 1 per micro-batch call instead of over the mini-batch"
    if spec.scope == "microbatch":
        alts["minibatch_mask"] = "Algorithm 1 over the whole mini-batch instead of per call"
    return alts


def _alternative_outcome(spec: CaseSpec, name: str) -> Outcome:
    if spec.loss == "m2po":
        if name == "all_tokens_mask":
            return oracle_outcome(spec, sem=Semantics(over="all"))
        if name == "kept_denominator":
            return oracle_outcome(spec, sem=Semantics(denominator="kept"))
        if name == "all_tokens_kept_denominator":
            scope = "microbatch" if len(spec.calls) > 1 else None
            return oracle_outcome(spec, sem=Semantics(over="all", denominator="kept", scope=scope))
        if name == "clip_not_mask":
            return oracle_outcome(spec, sem=Semantics(action="clip"))
        if name == "released":
            return oracle_outcome(spec, loss="m2po_released", params={"tau": spec.params["tau"]})
        if name == "no_trust_region":
            return oracle_outcome(spec, loss="grpo_notr", params={})
        if name == "microbatch_mask":
            return oracle_outcome(spec, sem=Semantics(scope="microbatch"))
        if name == "minibatch_mask":
            return oracle_outcome(spec, sem=Semantics(scope="minibatch"))
    if spec.loss == "grpo" and name == "dual_clip_c3":
        return oracle_outcome(spec, params={**spec.params, "clip_c": 3.0})
    if spec.loss == "grpo" and name == "no_dual_clip":
        return oracle_outcome(spec, params={**spec.params, "clip_c": None})
    raise KeyError(f"no alternative {name!r} for loss {spec.loss!r}")


def candidate_alternatives(spec: CaseSpec) -> dict[str, str]:
    if spec.loss == "m2po":
        out = _m2po_alternatives(spec)
        if spec.loss_agg_mode != "token-mean":
            out.pop("kept_denominator")
            out.pop("all_tokens_kept_denominator")
        return out
    if spec.loss == "grpo":
        if spec.params.get("clip_c") is None:
            return {"dual_clip_c3": "dual clip with c = 3 always on (verl's and Trinity-RFT's PPO loss)"}
        return {"no_dual_clip": "the same ε-clip without the dual clip"}
    return {}


def alternatives(spec: CaseSpec, expected: Outcome, rtol: float = 1e-6) -> dict[str, tuple[str, Outcome]]:
    """The alternative readings whose loss or gradient differs from ``expected`` (relative ``rtol``)."""
    out = {}
    for name, description in candidate_alternatives(spec).items():
        alt = _alternative_outcome(spec, name)
        scale = max(expected.loss_scale, 1e-30)
        g_scale = max((abs(g) for row in expected.grad for g in row), default=0.0) or 1.0
        loss_differs = any(abs(a - b) > rtol * scale for a, b in zip(alt.call_losses, expected.call_losses))
        grad_differs = any(
            abs(a - b) > rtol * g_scale for ra, rb in zip(alt.grad, expected.grad) for a, b in zip(ra, rb)
        )
        if loss_differs or grad_differs:
            out[name] = (description, alt)
    return out
