"""OUT/report.md: one page that says what was built, from where, and everything that was not clean.

Rendered from the manifests in OUT (not from the build's memory), so it describes the files on
disk even after partial rebuilds. Loud parts come first: a fallback banner, then count and
checksum warnings; the lists of skipped rows, kept rows without an answer and ground truths
math-verify cannot parse follow the summary table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text
from .contamination import load_manifests, markdown_table

__all__ = ["render_report", "write_report"]


def _source_cell(m: dict[str, Any]) -> str:
    src = m.get("source", {})
    if src.get("mode") == "online":
        hub = src["hub"]
        rev = hub.get("revision_resolved") or hub.get("revision_requested") or "default branch"
        return f"hub `{hub['hub_id']}` ({hub['split']}) @ {rev}"
    if src.get("mode") == "generated":
        return f"generated, seed {src.get('seed')}"
    files = src.get("files", [])
    return "<br>".join(f"`{f['relpath']}` sha256 {f['sha256'][:12]}…" for f in files)


def _status(m: dict[str, Any]) -> str:
    c = m["counts"]
    bits = ["OK" if c["count_ok"] else "**COUNT MISMATCH**"]
    if m.get("is_fallback"):
        bits.append("**FALLBACK**")
    if any(w.get("reason") == "sha256_mismatch" for w in m.get("warnings", [])):
        bits.append("**SHA256 MISMATCH**")
    return " ".join(bits)


def _summary(manifests: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| dataset | role | mode | rows kept (expected) | skipped | answer missing | unparseable gt | status "
        "| source |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for m in manifests:
        c = m["counts"]
        kept = ", ".join(f"{s} {n} ({c['expected_by_split'].get(s, '?')})" for s, n in c["kept_by_split"].items())
        gp = m["ground_truth_parse"]
        unparse = str(gp["n_unparseable"]) if gp["checked"] else "not checked"
        lines.append(
            f"| {m['dataset']} | {m['role']} | {m['mode']} | {kept} | {c['skipped']} | {c['answer_missing']} "
            f"| {unparse} | {_status(m)} | {_source_cell(m)} |"
        )
    return lines


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_report(out: Path, contamination: list[dict[str, Any]]) -> str:
    manifests = load_manifests(out)
    lines = ["# Data build report", ""]
    for m in manifests:
        if m.get("is_fallback"):
            lines += [
                f"> **WARNING — FALLBACK TRAINING DATA.** `{m['dataset']}` is **not** the real dataset: "
                f"{m.get('fallback_reason')}",
                "",
            ]
    warnings = [(m["dataset"], w) for m in manifests for w in m.get("warnings", [])]
    if warnings:
        lines += ["## ⚠ Warnings", ""]
        lines += [f"- **{d}**: {w['reason']}: {_esc(w['detail'])}" for d, w in warnings]
        lines.append("")
    lines += ["## Datasets", "", *_summary(manifests), ""]

    skipped = [(m["dataset"], s) for m in manifests for s in m.get("skipped", [])]
    lines += ["## Skipped rows", ""]
    if skipped:
        lines += ["| dataset | file | row | reason | detail | expected (sources.yaml) |", "|---|---|---:|---|---|---|"]
        for d, s in skipped:
            known = "yes" if s["expected"] else "**no**"
            lines.append(f"| {d} | `{s['file']}` | {s['row']} | {s['reason']} | {_esc(s['detail'])} | {known} |")
    else:
        lines.append("None.")
    lines.append("")

    missing = [(m["dataset"], r) for m in manifests for r in m.get("answer_missing", [])]
    lines += ["## Rows kept with an empty ground truth (`extra_info.answer_missing = true`)", ""]
    if missing:
        lines += ["| dataset | id | source row | question (start) |", "|---|---|---:|---|"]
        lines += [f"| {d} | `{r['id']}` | {r['source_row']} | {_esc(r['question'])} |" for d, r in missing]
    else:
        lines.append("None.")
    lines.append("")

    lines += ["## Ground truths math-verify cannot parse", ""]
    method = next((m["ground_truth_parse"]["method"] for m in manifests), "")
    lines += [
        f"Parsed as `{method}`. math-verify returns no math value for these, only the string, so a response "
        "can match them only as the identical string. Listed, not dropped.",
        "",
        "| dataset | unparseable / ground truths |",
        "|---|---:|",
    ]
    for m in manifests:
        gp = m["ground_truth_parse"]
        lines.append(f"| {m['dataset']} | {gp['n_unparseable'] if gp['checked'] else '-'} / {gp['n_ground_truths']} |")
    lines.append("")
    for m in manifests:
        bad = m["ground_truth_parse"]["unparseable"]
        if bad:
            items = "; ".join(f"`{b['id']}` → `{_esc(b['ground_truth'])}`" for b in bad)
            lines += [f"**{m['dataset']}**: {items}", ""]

    lines += ["## Contamination (normalised exact match, training set vs benchmarks)", ""]
    lines.append(markdown_table(contamination))
    return "\n".join(lines).rstrip() + "\n"


def write_report(out: Path, contamination: list[dict[str, Any]]) -> None:
    atomic_write_text(out / "report.md", render_report(out, contamination))
