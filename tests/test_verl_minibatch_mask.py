"""``minibatch`` mask scope: the distributed Algorithm 1 equals ``m2po_mask`` on the ranks' concatenation.

Two CPU processes with the gloo backend (torch.multiprocessing spawn). The children load
``m2po/verl_plugin/mask.py`` by file path: importing it as ``m2po.verl_plugin.mask`` would run the
package ``__init__``, which imports verl (~15 s per process) for the loss registration this test does
not need. mask.py itself imports only torch and ``m2po.losses``.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from m2po.losses import m2po_mask

MASK_PY = Path(__file__).resolve().parents[1] / "m2po" / "verl_plugin" / "mask.py"
ROWS = (3, 5)  # rows per rank: unequal on purpose (rank offsets matter for the tie rule)
LEN = 7


def _load_mask_module():
    spec = importlib.util.spec_from_file_location("m2po_verl_mask_under_test", MASK_PY)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def make_cases() -> list[dict]:
    """Mini-batches as full tensors [sum(ROWS), LEN]; each rank takes its contiguous rows."""
    cases = []
    g = torch.Generator().manual_seed(0)
    n = sum(ROWS)
    for tau in (0.04, 0.01, 0.0):  # random float32 data, heavy staleness
        old = -torch.rand(n, LEN, generator=g) * 3
        lp = old + torch.randn(n, LEN, generator=g) * 0.5
        adv = torch.randn(n, 1, generator=g).expand(n, LEN).clone()
        mask = torch.rand(n, LEN, generator=g) > 0.2
        cases.append({"lp": lp, "old": old, "adv": adv, "mask": mask, "tau": tau})
    # dyadic values: exact sums, equal M2 values on both ranks, a prefix mean exactly equal to τ
    levels = torch.tensor([0.125, 0.25, 0.5, -0.25, -0.5, 0.375])
    lr = levels[torch.randint(0, len(levels), (n, LEN), generator=g)].double()
    adv = torch.where(lr > 0, 1.0, -1.0).double()
    adv[0, :2] = 0.0  # A = 0: never in the trust region
    mask = torch.ones(n, LEN, dtype=torch.bool)
    mask[-1, -2:] = False
    for tau in (0.0625, 0.09375, 0.015625):  # 1/16, 3/32, 1/64
        cases.append(
            {
                "lp": lr - 1.0,
                "old": torch.full((n, LEN), -1.0, dtype=torch.float64),
                "adv": adv,
                "mask": mask,
                "tau": tau,
            }
        )
    # no candidate at all (every |log r| small)
    old = -torch.rand(n, LEN, generator=g)
    cases.append(
        {
            "lp": old + 0.01,
            "old": old,
            "adv": torch.ones(n, LEN),
            "mask": torch.ones(n, LEN, dtype=torch.bool),
            "tau": 0.04,
        }
    )
    return cases


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        mod = _load_mask_module()
        lo = sum(ROWS[:rank])
        hi = lo + ROWS[rank]
        results = []
        for c in make_cases():
            results.append(
                mod.distributed_m2po_mask(
                    c["lp"][lo:hi], c["old"][lo:hi], c["adv"][lo:hi], c["mask"][lo:hi], tau=c["tau"]
                )
            )
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_minibatch_scope_equals_single_process_mask_with_two_gloo_ranks() -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(_worker, args=(2, init_file, tmp), nprocs=2, join=True)
        per_rank = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(2)]
    cases = make_cases()
    n_removed = 0
    for i, c in enumerate(cases):
        expected = m2po_mask(c["lp"], c["old"], c["adv"], c["mask"], tau=c["tau"])
        got = torch.cat([per_rank[0][i], per_rank[1][i]])
        assert got.dtype == torch.bool and got.shape == expected.shape
        assert torch.equal(got, expected), f"case {i} (tau={c['tau']}): masks differ"
        n_removed += int((~expected).sum())
    assert n_removed > 0  # the cases do exercise the masking


def test_single_process_is_m2po_mask() -> None:
    mod = _load_mask_module()
    assert not dist.is_initialized()
    for c in make_cases():
        got = mod.distributed_m2po_mask(c["lp"], c["old"], c["adv"], c["mask"], tau=c["tau"])
        assert torch.equal(got, m2po_mask(c["lp"], c["old"], c["adv"], c["mask"], tau=c["tau"]))
