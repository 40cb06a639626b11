"""Conformance suite: the vectors, the checker on our losses, and planted mistakes it must catch.

The expected values in the vectors come from the literal oracles (m2po.conformance.oracles); the
checker passing on every registered loss is therefore an independent test of m2po.losses, and each
planted mistake (tests/conformance_planted.py) must make it exit non-zero.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from m2po.conformance.cases import all_cases
from m2po.conformance.cases.common import separated_tau
from m2po.conformance.cli import main
from m2po.conformance.export import export
from m2po.conformance.tensorfile import load_tensors, save_tensors
from m2po.losses import available_losses

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vectors")
    export(out)
    return out


def check(vectors: Path, target: str, *cases: str, json_out: Path | None = None) -> int:
    argv = ["check", "--vectors", str(vectors), "--target", target]
    for c in cases:
        argv += ["--cases", c]
    if json_out is not None:
        argv += ["--json", str(json_out)]
    return main(argv)


def results(path: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(path.read_text())["results"]}


# ---------------------------------------------------------------------------------------------
# the vectors
# ---------------------------------------------------------------------------------------------


def test_every_registered_loss_has_cases_and_every_case_a_registered_loss(vectors: Path) -> None:
    index = json.loads((vectors / "index.json").read_text())
    assert index["format"] == "m2po-conformance" and index["version"] == 1
    losses = {c["loss"] for c in index["cases"]}
    assert losses == set(available_losses())
    tags = {t for c in index["cases"] for t in c["tags"]}
    assert {"separating", "tis", "padding", "tie_rule"} <= tags
    assert {c["dtype"] for c in index["cases"]} == {"float32", "float64", "bfloat16"}
    assert {c["scope"] for c in index["cases"]} == {"call", "microbatch", "minibatch"}


def test_export_is_deterministic(vectors: Path, tmp_path: Path) -> None:
    export(tmp_path)
    assert (tmp_path / "index.json").read_bytes() == (vectors / "index.json").read_bytes()
    for f in sorted((vectors / "cases").iterdir()):
        assert (tmp_path / "cases" / f.name).read_bytes() == f.read_bytes(), f.name


def test_safetensors_files_load_with_the_reference_library(vectors: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    for f in sorted((vectors / "cases").iterdir())[:12]:
        ours, theirs = load_tensors(f), load_file(str(f))
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), (f.name, k)
    t = {"a": torch.randn(3, 4, dtype=torch.bfloat16), "b": torch.tensor([True, False]), "c": torch.zeros(0)}
    save_file(t, str(tmp_path / "ref.safetensors"))
    back = load_tensors(tmp_path / "ref.safetensors")
    assert all(torch.equal(back[k], t[k]) and back[k].dtype == t[k].dtype for k in t)
    save_tensors(t, tmp_path / "ours.safetensors")
    back = load_file(str(tmp_path / "ours.safetensors"))
    assert all(torch.equal(back[k], t[k]) for k in t)


def test_m2po_cases_decide_robustly_under_float32_rounding() -> None:
    """Every Algorithm-1 decision in the vectors is away from the threshold (except the tie-rule case)."""
    for case in all_cases():
        if case.loss != "m2po" or "tie_rule" in case.tags or case.params["tau"] == 0:
            continue
        regions = [(0, None)] + (case.calls if case.scope == "microbatch" else [])
        for start, stop in regions:
            assert separated_tau(case.inputs, case.params["tau"], start, stop), (case.name, start)


def test_separating_cases_separate(vectors: Path) -> None:
    """The three readings of M2PO give different expected outputs on their separating batches."""
    index = {c["name"]: c for c in json.loads((vectors / "index.json").read_text())["cases"]}

    def alts(name: str) -> set[str]:
        return {a["name"] for a in index[name]["alternatives"]}

    assert "microbatch_mask" in alts("m2po/scope_minibatch")
    assert "minibatch_mask" in alts("m2po/scope_microbatch")
    assert "all_tokens_mask" in alts("m2po/trust_region_vs_all_tokens")
    assert {"clip_not_mask", "released"} <= alts("m2po/mask_vs_clip")
    assert "dual_clip_c3" in alts("grpo/eps_clip_large_negative_ratio")
    # the hand-computed expectations of the separating batches (docstrings of cases/m2po.py)
    for name, removed in {
        "m2po/scope_minibatch": [(1, 1)],
        "m2po/scope_microbatch": [(0, 0), (0, 1), (1, 0), (1, 1)],
        "m2po/trust_region_vs_all_tokens": [(0, 2)],
        "m2po/mask_vs_clip": [(0, 4)],
    }.items():
        keep = load_tensors(vectors / index[name]["file"])["expected_keep_mask"]
        assert sorted(map(tuple, (~keep).nonzero().tolist())) == removed, name


# ---------------------------------------------------------------------------------------------
# the checker on our losses (acceptance) and on other target kinds
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", available_losses())
def test_every_registered_loss_passes(vectors: Path, name: str, tmp_path: Path) -> None:
    assert check(vectors, f"m2po:{name}", json_out=tmp_path / "r.json") == 0
    got = results(tmp_path / "r.json")
    assert got and all(r["status"] == "pass" for r in got.values())


def test_public_signature_target_needs_cases_and_passes(vectors: Path, capsys) -> None:
    assert check(vectors, "conformance_planted:correct_m2po") == 2
    assert "--cases" in capsys.readouterr().err
    assert check(vectors, "conformance_planted:correct_m2po", "m2po") == 0


def test_wrong_loss_for_the_cases_fails(vectors: Path, tmp_path: Path) -> None:
    assert check(vectors, "m2po:grpo_notr", "grpo", json_out=tmp_path / "r.json") == 1
    assert check(vectors, "m2po:grpo", "grpo/eps_clip_large_negative_ratio") == 0


def test_unusable_input_exits_2(tmp_path: Path, capsys) -> None:
    assert check(tmp_path, "m2po:m2po") == 2
    assert "conformance export" in capsys.readouterr().err
    assert main(["check", "--vectors", str(tmp_path), "--target", "no_such_module_xyz:fn", "--cases", "m2po"]) == 2


def test_checker_needs_only_torch(vectors: Path, tmp_path: Path) -> None:
    """A module:function target runs without importing m2po.losses (nor pandas, verl ...)."""
    target = tmp_path / "notr.py"
    target.write_text(
        textwrap.dedent(
            """
            import torch

            def notr(log_prob, old_log_prob, advantages, response_mask, loss_agg_mode="token-mean", **kw):
                m = response_mask.bool()
                r = torch.exp(torch.where(m, log_prob.float() - old_log_prob.float(), torch.zeros(())))
                return torch.where(m, -advantages.float() * r, torch.zeros(())).sum() / m.sum(), {}
            """
        )
    )
    code = (
        "import sys\nfrom m2po.conformance.cli import main\n"
        f"rc = main(['check', '--vectors', {str(vectors)!r}, '--target', {str(target) + ':notr'!r}, "
        "'--cases', 'grpo_notr/hand', '--cases', 'grpo_notr/bfloat16'])\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('m2po.losses', 'pandas', 'verl', 'transformers')))\n"
        "print('HEAVY', heavy)\nsys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "HEAVY []" in proc.stdout


def test_cli_subcommand(tmp_path: Path) -> None:
    from m2po.cli import main as m2po_main

    assert m2po_main(["conformance", "export", "--out", str(tmp_path)]) == 0
    assert m2po_main(["conformance", "check", "--vectors", str(tmp_path), "--target", "m2po:topr"]) == 0


# ---------------------------------------------------------------------------------------------
# planted mistakes: each must make the checker exit non-zero, on the cases that expose it
# ---------------------------------------------------------------------------------------------

PLANTED = {
    # target -> (the separating case that must fail, the alternative reading it must be recognised as)
    "PerMicrobatchMask": ("m2po/scope_minibatch", "microbatch_mask"),
    "kept_denominator": ("m2po/hand", "kept_denominator"),
    "all_tokens_mask": ("m2po/trust_region_vs_all_tokens", "all_tokens_mask"),
    "clip_not_mask": ("m2po/mask_vs_clip", "clip_not_mask"),
    "flipped_trust_region": ("m2po/hand", None),
}


@pytest.mark.parametrize("mistake", sorted(PLANTED))
def test_planted_mistake_fails_the_checker(vectors: Path, mistake: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert check(vectors, f"conformance_planted:{mistake}", "m2po", json_out=out) == 1
    got = results(out)
    case, reading = PLANTED[mistake]
    assert got[case]["status"] == "FAIL"
    if reading is not None:
        assert reading in got[case]["matches"]


def test_planted_mistake_exits_non_zero_through_the_command(vectors: Path) -> None:
    cmd = [sys.executable, "-m", "m2po.conformance", "check", "--vectors", str(vectors)]
    cmd += ["--target", "conformance_planted:PerMicrobatchMask"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT / "tests", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "matches microbatch_mask" in proc.stdout


def test_docs_describe_every_case_and_alternative() -> None:
    doc = (ROOT / "docs" / "conformance.md").read_text()
    for case in all_cases():
        assert f"`{case.name}`" in doc, case.name
    from m2po.conformance.expected import candidate_alternatives

    names = {n for case in all_cases() for n in candidate_alternatives(case)}
    for name in names:
        assert f"`{name}`" in doc, name
