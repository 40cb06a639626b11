"""Policy-loss forward+backward time: grpo, m2po, m2po_released vs the released per-token loop.

The baseline is the authors' threshold search as released: a Python loop over the sorted
trust-region values with one ``.item()`` (a device sync on GPU) per token. Sizes: 30k tokens
(one released micro-batch per GPU) and 1M tokens (a large optimizer mini-batch). The batch is
synthetic with heavy-tailed log-ratios (Student-t, 3 d.o.f., scale 0.15), like a stale batch.
"""

from __future__ import annotations

import math

import torch

from m2po.losses import get_policy_loss, released_threshold
from m2po.losses.common import prepare_batch, trust_region
from m2po.losses.ppo import ppo_clip_objective

from .timing import best_of, print_table


def make_batch(n_tokens: int, seed: int = 0, resp_len: int = 1000):
    g = torch.Generator().manual_seed(seed)
    rows = max(1, n_tokens // resp_len)
    t = torch.distributions.StudentT(3.0)
    torch.manual_seed(seed)
    log_ratio = 0.15 * t.sample((rows, resp_len))
    old = -torch.rand(rows, resp_len, generator=g) * 3
    adv = torch.randn(rows, 1, generator=g).expand(rows, resp_len).contiguous()
    mask = torch.ones(rows, resp_len, dtype=torch.bool)
    return old + log_ratio, old, adv, mask


def released_loop_search(log_ratio: torch.Tensor, tr: torch.Tensor, tau: float = 0.04) -> float | None:
    """The released threshold search: one ``.item()`` per visited token (a device sync on GPU)."""
    v = log_ratio.detach()[tr].square()
    n = v.numel()
    if n == 0 or float(v.sum()) / n <= tau + 1e-12:
        return None
    sorted_v, _ = torch.sort(v)
    csum = torch.cumsum(sorted_v, 0)
    target = tau * n
    for k in range(n):
        if (sorted_v[k].item() - 1e-12) * (n - k - 1) + csum[k].item() >= target - 1e-12:
            return 0.0 if k == 0 else math.sqrt(max(sorted_v[k - 1].item() - 1e-12, 0.0))
    return None


def released_loop_loss(log_prob, old_log_prob, advantages, response_mask, tau=0.04):
    """The released search, per token, followed by the same PPO clip (the baseline)."""
    batch = prepare_batch(log_prob, old_log_prob, advantages, response_mask)
    t = released_loop_search(batch.log_ratio, trust_region(batch, tol=1e-12), tau)
    low, high = (0.0, 1e5) if t is None else (math.exp(-t), math.exp(t))
    obj = ppo_clip_objective(batch, batch.ratio, low, high)
    return obj.loss_mat.sum() / batch.mask.sum()


def time_loss(fn, inputs, **params) -> float:
    lp, old, adv, mask = inputs

    def step():
        x = lp.clone().requires_grad_(True)
        out = fn(x, old, adv, mask, **params)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()

    return best_of(step, repeats=3)


def search_only(inputs) -> tuple[float, float]:
    """Threshold search alone: vectorised (one sort + cumsum) vs the per-token loop."""
    batch = prepare_batch(*inputs)
    tr = trust_region(batch, tol=1e-12)
    fast = best_of(lambda: released_threshold(batch.log_ratio, tr, 0.04), repeats=3)
    slow = best_of(lambda: released_loop_search(batch.log_ratio, tr, 0.04), repeats=1, warmup=0)
    return fast, slow


def main() -> None:
    torch.set_num_threads(2)
    rows, search_rows = [], []
    for n_tokens in (30_000, 1_000_000):
        inputs = make_batch(n_tokens)
        grpo = time_loss(get_policy_loss("grpo"), inputs)
        m2po = time_loss(get_policy_loss("m2po"), inputs)
        released = time_loss(get_policy_loss("m2po_released"), inputs)
        loop = time_loss(released_loop_loss, inputs)
        rows.append(
            [
                f"{n_tokens:,}",
                grpo * 1e3,
                m2po * 1e3,
                released * 1e3,
                loop * 1e3,
                m2po / grpo,
                released / grpo,
                loop / m2po,
                loop / released,
            ]
        )
        fast, slow = search_only(inputs)
        search_rows.append([f"{n_tokens:,}", fast * 1e3, slow * 1e3, slow / fast])
    print_table(
        "Policy losses, forward+backward (ms, best of 3, 2 threads)",
        [
            "tokens",
            "grpo",
            "m2po",
            "m2po_released",
            "released loop",
            "m2po/grpo",
            "released/grpo",
            "loop/m2po",
            "loop/released",
        ],
        rows,
    )
    print_table(
        "Released threshold search alone (ms): vectorised vs per-token loop (CPU; on a GPU every loop step also syncs)",
        ["tokens", "vectorised", "per-token loop", "loop/vectorised"],
        search_rows,
    )
    print("\nGoals: m2po/grpo <= 1.5 at 1M tokens; loop/m2po >= 100 at the largest size the loop finishes.")


if __name__ == "__main__":
    main()
