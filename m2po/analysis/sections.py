"""The Markdown sections of the report (:mod:`m2po.analysis.report` assembles them).

Order, as a reader wants it: the verdict first, a table of contents, the claims with their deciding
numbers (the rules in a legend below the table, not in its cells), Table 1, the figures, then the run
inventory and the conventions. Accuracies are in percent throughout; differences in points.
"""

from __future__ import annotations

import math

import pandas as pd

from .aggregate import order_models
from .claims import FAILS, HOLDS, INCONCLUSIVE, Rules, Verdict

#: (anchor, title) of the report's sections, in order
SECTIONS = (
    ("claims", "Headline claims"),
    ("power", "What the study could detect"),
    ("regime", "Regime of the study"),
    ("table-1", "Table 1"),
    ("figures", "Figures"),
    ("inventory", "Run inventory"),
    ("conventions", "Conventions"),
)


def anchor(name: str) -> str:
    """An explicit anchor (GitHub and the HTML both honour it) before a heading."""
    return f'<a id="{name}"></a>'


def _overall(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.part == "all" and v.model == "all models"]


def verdict_markdown(verdicts: list[Verdict]) -> str:
    """The first thing the report says: how many of the paper's four headline claims hold here."""
    overall = _overall(verdicts)
    holds = sum(v.verdict == HOLDS for v in overall)
    fails = sum(v.verdict == FAILS for v in overall)
    rest = len(overall) - holds - fails
    tail = [f"{fails} {'does' if fails == 1 else 'do'} not hold"] if fails else []
    tail += [f"{rest} {'is' if rest == 1 else 'are'} inconclusive at this scale"] if rest else []
    lines = [
        f"**Verdict: {holds} of {len(overall)} headline claims hold on this study's numbers"
        + (f"; {', '.join(tail)}" if tail else "")
        + ".** Each is decided per model by a stated rule on the measured numbers "
        "([Headline claims](#claims)).",
        "",
        "| Claim | Verdict | Per model |",
        "|---|---|---|",
    ]
    lines += [f"| {v.claim}. {v.statement} | **{v.verdict}** | {v.evidence} |" for v in overall]
    return "\n".join(lines) + "\n"


def contents_markdown(figures: dict[str, str]) -> str:
    """The table of contents: every section, and every figure under Figures."""
    lines = ["**Contents**", ""]
    for name, title in SECTIONS:
        lines.append(f"- [{title}](#{name})")
        if name == "figures":
            lines.append("  - " + " · ".join(f"[{fig}](#{fig})" for fig in figures))
    return "\n".join(lines) + "\n"


def _value(v: Verdict) -> tuple[str, str]:
    """The statistic and its s.e.: a ratio as ``12.5×``, an accuracy difference in points."""
    if not math.isfinite(v.value):
        return "n/a", ""
    if " / " in v.statistic:
        return f"{v.value:.3g}×", ""
    se = f"{100 * v.se:.1f}" if math.isfinite(v.se) else ""
    return f"{100 * v.value:+.1f} pts", se


def claims_markdown(verdicts: list[Verdict], rules: Rules) -> str:
    """Every decided part with its numbers; the rule of each part once, in a legend below the table."""
    lines = [
        "| Part | Model | Statistic | Value | s.e. (pts) | Verdict | Numbers |",
        "|---|---|---|---|---|---|---|",
    ]
    legend: dict[str, str] = {}
    for v in verdicts:
        if v.part == "all":
            continue
        value, se = _value(v)
        lines.append(f"| {v.part} | {v.model} | {v.statistic} | {value} | {se} | {v.verdict} | {v.evidence} |")
        legend.setdefault(v.part, v.rule)
    lines += [
        "",
        "Rules (d = the statistic, se = its standard error; a part holds, does not hold, or is inconclusive):",
        "",
    ]
    lines += [f"- **{part}** — {rule}" for part, rule in legend.items()]
    lines += [
        "",
        f"Decision constants: z = {rules.z:g} s.e.; matching margin {100 * rules.match_margin:g} points; smallest "
        f'claimed accuracy effect {100 * rules.min_effect:g} point; "rises sharply" = ×{rules.clip_rise:g}; '
        f'"order of magnitude" = ≤ {rules.clip_ratio:g}×. A cell\'s s.e. is the larger of the seed s.e. and the '
        "evaluation s.e./√n; a difference's s.e. is √(se₁² + se₂²). Clipping ratios are steady-state means "
        "(updates ≥ s). A claim holds for a model when all its parts hold, and overall when it holds on every "
        "model; a part with a missing run is inconclusive.",
    ]
    return "\n".join(lines) + "\n"


def _ratio_part(statistic: str) -> bool:
    return " / " in statistic


def _pts(x: float, signed: bool = True) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def power_markdown(power: pd.DataFrame) -> str:
    """Per claim part: the minimal detectable effect (z·se), the interval the data allow, and for an
    inconclusive part the values the data rule out (:func:`m2po.analysis.power.power_frame`)."""
    if power.empty:
        return "No claim part could be evaluated.\n"
    rows = []
    for r in power.itertuples():
        if _ratio_part(r.statistic):
            mde = f"{r.mde:.2g}×" if math.isfinite(r.mde) else "n/a"
            interval = f"{r.lo:.3g}× to {r.hi:.3g}×" if math.isfinite(r.lo) else "n/a"
            ruled = f"< {r.lo:.3g}× and > {r.hi:.3g}×" if math.isfinite(r.lo) else ""
        else:
            mde = f"{_pts(r.mde, signed=False)} pts"
            interval = f"{_pts(r.lo)} to {_pts(r.hi)} pts"
            ruled = f"< {_pts(r.lo)} and > {_pts(r.hi)} pts" if math.isfinite(r.lo) else ""
        ruled = ruled if r.verdict == INCONCLUSIVE else ""
        rows.append([r.part, r.model, r.statistic, r.verdict, mde, interval, ruled])
    header = ["Part", "Model", "Statistic", "Verdict", "Minimal detectable effect (2·se)", "Interval (d ± 2·se)"]
    lines = markdown_table([*header, "An inconclusive part rules out d"], rows)
    lines += [
        "",
        'A true effect smaller than the minimal detectable effect could not have made a "better" part hold; '
        "the data are consistent only with values of the statistic inside the interval. Ratios use the "
        "delta-method s.e. and the interval (a − 2·se_a)/(b + 2·se_b) to (a + 2·se_a)/(b − 2·se_b).",
    ]
    return "\n".join(lines) + "\n"


def regime_markdown(regime: pd.DataFrame) -> str:
    """The pre-registered regime targets measured on the warm start and on GRPO (m2po.analysis.regime)."""
    if regime.empty:
        return "No regime statistics (no warm-start statistics and no GRPO runs).\n"
    rows = []
    for r in regime.itertuples():
        if not math.isfinite(r.measured):
            shown = "n/a"
        elif "/" in r.target:
            shown = f"{r.measured:.1f}×" + (f" ± {r.se:.1f}" if math.isfinite(r.se) else "")
        elif "converges" in r.target:
            se = f" (1 s.e. = {_pts(r.se, signed=False)})" if math.isfinite(r.se) else ""
            shown = f"{_pts(r.measured)} pts{se}"
        else:
            shown = f"{100 * r.measured:.2f} %" + (f" ± {100 * r.se:.2f}" if math.isfinite(r.se) else "")
        rows.append([r.model, r.target, shown, str(int(r.n)) if r.n else "", r.goal, r.met, r.detail])
    lines = markdown_table(["Model", "Target", "Measured", "n", "Target value", "Met", "Detail"], rows)
    lines += [
        "",
        "These targets decide whether the task is in the regime of LLM reasoning that the paper's mechanisms "
        "need (most tokens near-deterministic, a few high-entropy forking tokens; GRPO's clipping rare on-policy "
        "and 10–25× higher when stale, as in the paper's Fig. 7b). They are measured on the warm-start policy "
        "(n = response tokens) and on GRPO runs only (n = seeds), never on the compared methods.",
    ]
    return "\n".join(lines) + "\n"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A pipe table without the columns that are empty in every row (e.g. the paper's Avg for a model
    the paper did not train)."""
    keep = [i for i in range(len(header)) if any(r[i] for r in rows)] if rows else list(range(len(header)))
    lines = ["| " + " | ".join(header[i] for i in keep) + " |", "|" + "---|" * len(keep)]
    return lines + ["| " + " | ".join(r[i] for i in keep) + " |" for r in rows]


def _fmt_wall(values: pd.Series, exact: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return ""
    approx = "" if exact.fillna(False).astype(bool).all() else "≈"
    return f"{approx}{v.median() / 60:.1f} min"


def _complete(flags: pd.Series) -> str:
    known = [bool(f) for f in flags if f is not None and not (isinstance(f, float) and math.isnan(f))]
    return f"{sum(known)}/{len(flags)}" if known else "unknown"


def _range(counts: pd.Series | None) -> str:
    """``2`` or ``1–2`` for per-run counts (the evaluation stage's graded checkpoints); empty if none."""
    if counts is None or not counts.fillna(0).astype(int).any():
        return ""
    lo, hi = int(counts.fillna(0).min()), int(counts.fillna(0).max())
    return str(lo) if lo == hi else f"{lo}–{hi}"


def inventory_markdown(inv: pd.DataFrame) -> str:
    """Runs per cell (model, method, s, τ): count, seeds, complete, updates, checkpoints graded by the evaluation
    stage, median wall time."""
    if inv.empty:
        return "No run directories found.\n"
    ok = inv[inv["status"] == "ok"].copy()
    header = ["Model", "Method", "s", "τ", "Runs", "Seeds", "Complete", "Updates", "Checkpoints graded"]
    header.append("Wall time (median)")
    rows = []
    if len(ok):
        ok["tau_s"] = ok["tau"].map(lambda t: "" if pd.isna(t) else f"{t:g}")
        ok["_order"] = ok["model"].map({m: i for i, m in enumerate(order_models(ok["model"].unique()))})
        for (_, model, method, s, tau), g in ok.groupby(["_order", "model", "method", "staleness", "tau_s"]):
            seeds = ",".join(str(int(x)) for x in sorted(g["seed"]))
            upd = f"{int(g['last_update'].min())}" + (
                f"–{int(g['last_update'].max())}" if g["last_update"].nunique() > 1 else ""
            )
            rows.append(
                [model, method, str(int(s)), tau, str(len(g)), seeds, _complete(g["complete"]), upd,
                 _range(g.get("n_graded")), _fmt_wall(g["wall_s"], g["wall_exact"])]
            )  # fmt: skip
    text = "\n".join(markdown_table(header, rows)) + "\n"
    bad = inv[inv["status"] != "ok"]
    if len(bad):
        text += "\nSkipped directories:\n\n" + "\n".join(f"- `{r.run_id}`: {r.status}" for r in bad.itertuples())
        text += "\n"
    text += (
        "\n*Wall time: from the manifest when it records one, else (≈) last log write minus the "
        "manifest's creation time.*\n"
    )
    return text
