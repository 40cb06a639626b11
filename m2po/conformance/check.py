"""``m2po conformance check --vectors DIR --target TARGET``: run a loss against the vectors.

Per case: the loss of every call, the gradient w.r.t. log_prob (tokens on a clip boundary excluded) and
the keep-mask — read off the gradient: a response token with A ≠ 0 keeps its gradient iff it is
non-zero — are compared with the expected values at the tolerance of the case's dtype. A failing case
is also compared with each stored alternative reading, so the table says which reading the target
follows. Exit status 1 when any case fails or errors (or none passes), 2 for unusable input.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .adapters import Adapter, LossCall, Unsupported
from .spec import FORMAT, FORMAT_VERSION, OPTIONAL_INPUTS
from .tensorfile import load_tensors


class VectorsError(ValueError):
    """The vectors directory is missing, of another format, or inconsistent."""


@dataclass
class CaseResult:
    name: str
    loss: str
    dtype: str
    status: str  # pass | FAIL | ERROR | skip
    loss_abs: float = math.nan
    loss_rel: float = math.nan
    grad_abs: float = math.nan
    grad_rel: float = math.nan
    mask_mismatch: int = 0
    mask_total: int = 0
    rtol: float = math.nan
    atol: float = math.nan
    matches: list[str] = field(default_factory=list)
    note: str = ""


def load_index(vectors: str | Path) -> dict:
    path = Path(vectors) / "index.json"
    if not path.is_file():
        raise VectorsError(f"{path}: not found; write the vectors with `m2po conformance export --out {vectors}`")
    try:
        index = json.loads(path.read_text())
    except ValueError as e:
        raise VectorsError(f"{path}: not valid JSON ({e})") from None
    if index.get("format") != FORMAT or index.get("version") != FORMAT_VERSION:
        raise VectorsError(
            f"{path}: format {index.get('format')!r} version {index.get('version')!r}; this checker reads "
            f"{FORMAT!r} version {FORMAT_VERSION} (re-export the vectors with this m2po)"
        )
    return index


def select_cases(index: dict, patterns: list[str] | None, default_loss: str | None) -> list[dict]:
    """Cases whose loss is one of ``patterns`` or whose name matches one (fnmatch); by default the cases
    of ``default_loss``."""
    cases = index["cases"]
    if not patterns:
        if default_loss is None:
            raise ValueError("this target does not say which loss it implements: pass --cases LOSS (e.g. m2po)")
        patterns = [default_loss]
    chosen = [c for c in cases if any(c["loss"] == p or fnmatch.fnmatchcase(c["name"], p) for p in patterns)]
    if not chosen:
        losses = sorted({c["loss"] for c in cases})
        raise ValueError(f"--cases {patterns} selects no case; losses in the vectors: {losses}")
    return chosen


def _calls(case: dict, adapter: Adapter) -> list[tuple[int, int]]:
    rows = case["shape"][0]
    if case["split"] is None or (case["scope"] == "minibatch" and adapter.minibatch_in_one_call):
        return [(0, rows)]
    out, start = [], 0
    for n in case["split"]:
        out.append((start, start + n))
        start += n
    return out


def run_case(case: dict, tensors: dict[str, torch.Tensor], adapter: Adapter) -> tuple[list[float], torch.Tensor]:
    """Call the adapter once per call of the case; returns (loss of each call, gradient [B, L] float64)."""
    mask = tensors["response_mask"].bool()
    minibatch = {k: tensors[k] for k in ("log_prob", "old_log_prob", "advantages") + OPTIONAL_INPUTS if k in tensors}
    minibatch["response_mask"] = mask
    calls = _calls(case, adapter)
    split = len(calls) > 1
    n_tok = float(mask.sum())
    n_rows = float(mask.any(-1).sum())
    losses, grads = [], []
    for start, stop in calls:
        part = {k: v[start:stop] for k, v in minibatch.items()}
        leaf = part["log_prob"].detach().clone().requires_grad_(True)
        call = LossCall(
            case=case["name"], loss=case["loss"], params=dict(case["params"]), log_prob=leaf,
            old_log_prob=part["old_log_prob"], advantages=part["advantages"], response_mask=part["response_mask"],
            loss_agg_mode=case["loss_agg_mode"], scope=case["scope"], rows=(start, stop), minibatch=minibatch,
            proximal_log_prob=part.get("proximal_log_prob"), rollout_log_prob=part.get("rollout_log_prob"),
            tis_cap=case["tis_cap"], global_token_count=n_tok if split else None,
            global_seq_count=n_rows if split else None,
        )  # fmt: skip
        out = adapter(call)
        loss = out[0] if isinstance(out, tuple | list) else out
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TypeError(f"the target returned {type(loss).__name__}, expected a 0-dim tensor (or (loss, metrics))")
        if loss.requires_grad:
            loss.backward()
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        losses.append(float(loss.detach()))
        grads.append(grad.detach().to(torch.float64))
    return losses, torch.cat(grads, 0)


def _loss_error(got: list[float], want: list[float], scale: float, tol: dict) -> tuple[float, float, bool]:
    if len(got) != len(want):  # one call over the mini-batch: compare the total
        got, want = [math.fsum(got)], [math.fsum(want)]
    abs_err = max(abs(g - w) for g, w in zip(got, want))
    rel = max((abs(g - w) / abs(w) for g, w in zip(got, want) if w != 0), default=0.0 if abs_err == 0 else math.inf)
    ok = all(abs(g - w) <= tol["atol"] * scale + tol["rtol"] * abs(w) for g, w in zip(got, want))
    return abs_err, rel, ok and all(math.isfinite(g) for g in got)


def _grad_error(got: torch.Tensor, want: torch.Tensor, compared: torch.Tensor, tol: dict) -> tuple[float, float, bool]:
    g, w = got[compared], want[compared]
    if g.numel() == 0:
        return 0.0, 0.0, True
    err = (g - w).abs()
    scale = float(want.abs().max()) or 1.0
    nz = w != 0
    rel = float((err[nz] / w[nz].abs()).max()) if bool(nz.any()) else 0.0
    ok = bool((err <= tol["atol"] * scale + tol["rtol"] * w.abs()).all()) and bool(torch.isfinite(g).all())
    return float(err.max()), rel, ok


def compare(case: dict, tensors: dict, losses: list[float], grad: torch.Tensor) -> CaseResult:
    tol = case["tolerance"]
    exp = case["expected"]
    mask = tensors["response_mask"].bool()
    ambiguous = tensors[exp["ambiguous"]]
    result = CaseResult(case["name"], case["loss"], case["dtype"], "pass", rtol=tol["rtol"], atol=tol["atol"])
    result.loss_abs, result.loss_rel, loss_ok = _loss_error(losses, exp["call_losses"], exp["loss_scale"], tol)
    compared = mask & ~ambiguous
    result.grad_abs, result.grad_rel, grad_ok = _grad_error(grad, tensors[exp["grad"]], compared, tol)
    informative = compared & (tensors["advantages"].to(torch.float64) != 0)
    got_keep = grad != 0
    want_keep = tensors[exp["keep_mask"]]
    result.mask_total = int(informative.sum())
    result.mask_mismatch = int(((got_keep != want_keep) & informative).sum())
    if not (loss_ok and grad_ok and result.mask_mismatch == 0):
        result.status = "FAIL"
        for alt in case["alternatives"]:
            a_loss = _loss_error(losses, alt["call_losses"], exp["loss_scale"], tol)[2]
            a_grad = _grad_error(grad, tensors[alt["grad"]], compared, tol)[2]
            if a_loss and a_grad:
                result.matches.append(alt["name"])
    notes = []
    if not all(math.isfinite(x) for x in losses) or not bool(torch.isfinite(grad[mask]).all()):
        notes.append("non-finite loss or gradient")
    if ambiguous.any():
        notes.append(f"{int(ambiguous.sum())} token(s) on a clip boundary not compared")
    result.note = "; ".join(notes)
    return result


def check(vectors: str | Path, adapter: Adapter, patterns: list[str] | None = None) -> list[CaseResult]:
    index = load_index(vectors)
    results = []
    for case in select_cases(index, patterns, adapter.claims):
        try:
            tensors = load_tensors(Path(vectors) / case["file"])
        except (OSError, ValueError) as e:
            raise VectorsError(f"case {case['name']}: {e}") from None
        try:
            losses, grad = run_case(case, tensors, adapter)
        except Unsupported as e:
            results.append(CaseResult(case["name"], case["loss"], case["dtype"], "skip", note=str(e)))
            continue
        except Exception as e:  # the target raised: that case fails, the run goes on
            note = f"{type(e).__name__}: {e}".splitlines()[0][:160]
            results.append(CaseResult(case["name"], case["loss"], case["dtype"], "ERROR", note=note))
            continue
        results.append(compare(case, tensors, losses, grad))
    return results


def exit_status(results: list[CaseResult]) -> int:
    if any(r.status in ("FAIL", "ERROR") for r in results):
        return 1
    return 0 if any(r.status == "pass" for r in results) else 1


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1e}"


def format_table(results: list[CaseResult], target: str) -> str:
    header = ["case", "dtype", "result", "loss abs", "loss rel", "grad abs", "grad rel", "mask", "rtol/atol", "note"]
    rows = []
    for r in results:
        note = r.note
        if r.matches:
            note = f"matches {', '.join(r.matches)}" + (f"; {note}" if note else "")
        mask = f"{r.mask_mismatch}/{r.mask_total}" if r.status in ("pass", "FAIL") else "-"
        tol = "-" if math.isnan(r.rtol) else f"{r.rtol:g}/{r.atol:g}"
        rows.append(
            [r.name, r.dtype, r.status, _fmt(r.loss_abs), _fmt(r.loss_rel), _fmt(r.grad_abs), _fmt(r.grad_rel),
             mask, tol, note]
        )  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = [f"conformance of {target}"]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *rows]]
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "FAIL", "ERROR", "skip")}
    lines.append(
        f"summary: pass {counts['pass']}, fail {counts['FAIL'] + counts['ERROR']} (raised {counts['ERROR']}), "
        f"skip {counts['skip']}"
    )
    return "\n".join(lines)


def results_json(results: list[CaseResult], target: str) -> str:
    return json.dumps({"target": target, "results": [asdict(r) for r in results]}, indent=1) + "\n"
