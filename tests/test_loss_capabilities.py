"""The loss registry answers what callers need (``loss_info``), and nothing outside it branches on a loss name.

Expectations are written by hand from the losses' papers (not read back from the registry): decoupled PPO
(AReaL Eq. 5) needs the proximal policy, M2PO's Algorithm 1 is a mini-batch mask with τ = 0.04, GSPO's
Eq. 5 averages per sequence, GRPO's ε is PPO's clip ratio.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from m2po.loss_names import LOSS_NAMES, PAPER_TAU, TAU_LOSSES
from m2po.losses import LOG_RATIO_CLAMP, available_losses, loss_info, m2po_mask, register_policy_loss
from m2po.losses.common import PolicyBatch, TokenObjective

ROOT = Path(__file__).resolve().parents[1]

#: name -> (default_agg, tau_param, takes_proximal, has a batch mask, trainer_clip_ratio)
EXPECTED = {
    "grpo": (None, None, False, False, True),
    "grpo_notr": (None, None, False, False, False),
    "m2po": (None, "tau", False, True, False),
    "m2po_released": (None, "tau", False, False, False),
    "gspo": ("seq-mean-token-mean", None, False, False, False),
    "cispo": (None, None, False, False, False),
    "topr": (None, None, False, False, False),
    "gppo": (None, None, False, False, False),
    "decoupled_ppo": (None, None, True, False, False),
}


def test_torch_free_names_equal_the_registry():
    assert LOSS_NAMES == tuple(available_losses())
    assert set(EXPECTED) == set(LOSS_NAMES)
    assert TAU_LOSSES == tuple(n for n in available_losses() if loss_info(n).tau_param is not None)


def test_paper_constants():
    assert PAPER_TAU == 0.04  # §5.2: every run of the paper
    assert LOG_RATIO_CLAMP == 20.0  # docs/losses.md: r = exp(clamp(log r, −20, 20))
    for name in TAU_LOSSES:
        info = loss_info(name)
        assert info.defaults[info.tau_param] == 0.04


@pytest.mark.parametrize("module", ["m2po.loss_names", "m2po.pipeline", "m2po.analysis.runs"])
def test_name_modules_import_no_torch(module):
    """The Snakefile expands the grid through m2po.pipeline; that must not import torch."""
    code = f"import sys, {module}; heavy = [m for m in ('torch', 'verl') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"{module} imports {out.stdout.strip()}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capabilities(name):
    agg, tau, proximal, has_mask, trainer_clip = EXPECTED[name]
    info = loss_info(name)
    assert info.default_agg == agg
    assert info.tau_param == tau
    assert info.takes_proximal is proximal
    assert (info.batch_mask is not None) is has_mask
    assert info.trainer_clip_ratio is trainer_clip


def test_m2po_batch_mask_is_algorithm1():
    """m2po's batch mask is m2po_mask with the loss's τ from the params (default 0.04).

    One row, A = 1, log r = 0.1, 0.5, 0.3 (all in the trust region), (log r)² = .01, .25, .09. Ascending
    prefix means: .01, .05, .1167. τ = 0.04 keeps only the first; τ = 0.1 keeps the first two."""
    info = loss_info("m2po")
    assert info.batch_mask is m2po_mask
    old = torch.zeros(1, 3, dtype=torch.float64)
    lp = torch.tensor([[0.1, 0.5, 0.3]], dtype=torch.float64)
    adv, mask = torch.ones(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.bool)
    assert info.batch_keep_mask(lp, old, adv, mask, {}).tolist() == [[True, False, False]]
    assert info.batch_keep_mask(lp, old, adv, mask, {"tau": 0.1, "loss_agg_mode": "token-mean"}).tolist() == [
        [True, False, True]
    ]
    with pytest.raises(ValueError, match="no batch-level mask"):
        loss_info("grpo").batch_keep_mask(lp, old, adv, mask, {})


@pytest.mark.parametrize(
    "declared",
    [{"tau_param": "tau"}, {"batch_mask": m2po_mask}, {"trainer_clip_ratio": True}],
)
def test_a_declaration_needs_the_parameter(declared):
    def objective(batch: PolicyBatch, scale: float = 1.0) -> TokenObjective:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="declared, but its objective has no such parameters"):
        register_policy_loss("test_capability_without_parameter", **declared)(objective)
    assert "test_capability_without_parameter" not in available_losses()


# -- no code outside the registry branches on a loss name -------------------------------------------------

#: (file, enclosing function) -> why it may compare with a loss name
ALLOWED = {
    ("m2po/conformance/expected.py", "_token_terms"): "the independent oracles, chosen per loss, never ask the "
    "registry they check",
    ("m2po/conformance/expected.py", "oracle_outcome"): "oracle: Algorithm 1's mask for the m2po oracle",
    ("m2po/conformance/expected.py", "_alternative_outcome"): "oracle: the other readings of M2PO and GRPO",
    ("m2po/conformance/expected.py", "candidate_alternatives"): "oracle: the other readings of M2PO and GRPO",
    ("m2po/conformance/targets.py", "resolve_target"): "`m2po:NAME` names this package, not a loss",
    ("m2po/analysis/table1.py", "table1_markdown"): "Table 1 is about the paper's methods (Δ vs GRPO)",
}


def _is_name(node: ast.AST) -> bool:
    """A literal loss name (or its verl alias ``m2po.<name>``), or a tuple/list/set holding one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value in LOSS_NAMES or node.value.removeprefix("m2po.") in LOSS_NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_name(e) for e in node.elts)
    return False


def name_comparisons(path: Path) -> list[tuple[str, int, str]]:
    """``(enclosing function, line, source)`` of every comparison with a loss name in ``path``: ``==``,
    ``!=``, ``in`` with a literal name, ``.startswith(name)``/``.endswith(name)``, ``case "name":``."""
    source = path.read_text()
    tree = ast.parse(source)
    hits: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, func: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = node.name
        hit = False
        if isinstance(node, ast.Compare):
            hit = any(_is_name(x) for x in (node.left, *node.comparators))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            hit = node.func.attr in ("startswith", "endswith") and any(_is_name(a) for a in node.args)
        elif isinstance(node, ast.MatchValue):
            hit = _is_name(node.value)
        if hit:
            hits.append((func, node.lineno, ast.get_source_segment(source, node) or ""))
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(tree, "<module>")
    return hits


def test_the_scanner_finds_name_comparisons(tmp_path):
    code = (
        "def f(a, loss):\n"
        "    if a.loss == 'm2po':\n        pass\n"
        "    if loss in ('decoupled_ppo', 'm2po.decoupled_ppo'):\n        pass\n"
        "    if loss.startswith('m2po'):\n        pass\n"
        "    match loss:\n        case 'grpo':\n            pass\n"
        "    return loss == 'vanilla' or {'gspo': 1}[loss]\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(code)
    assert [line for _, line, _ in name_comparisons(path)] == [2, 4, 6, 9]


def test_no_code_outside_the_registry_compares_loss_names():
    found, used = [], set()
    for path in sorted((ROOT / "m2po").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("m2po/losses/"):
            continue
        for func, line, text in name_comparisons(path):
            if (rel, func) in ALLOWED:
                used.add((rel, func))
            else:
                found.append(f"{rel}:{line} in {func}(): {text}")
    assert not found, "ask m2po.losses.loss_info(name) instead of comparing the name:\n" + "\n".join(found)
    assert used == set(ALLOWED), f"allowed exceptions that no longer compare names: {set(ALLOWED) - used}"
