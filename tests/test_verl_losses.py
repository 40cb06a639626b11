"""verl plugin: our losses in verl's registry, called exactly as verl 0.9.1 calls them.

One verl import for the module (~15 s). The entry-point check runs in a subprocess started at import
time, so its own verl import overlaps with the rest of the session.
"""

from __future__ import annotations

import atexit
import subprocess
import sys

import pytest
import torch

_PROBE = """
import verl  # loads the `verl.plugins` entry points, swallowing their import errors
from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY as R
import sys
names = ["grpo", "grpo_notr", "m2po", "m2po_released", "gspo", "cispo", "topr", "gppo", "decoupled_ppo"]
ok = all(getattr(R.get(n), "_m2po_loss", False) for n in names) and "m2po.verl_plugin" in sys.modules
print("REGISTERED" if ok else "MISSING", sorted(R))
"""
_probe = subprocess.Popen([sys.executable, "-c", _PROBE], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
atexit.register(lambda: _probe.poll() is None and _probe.kill())  # collected, then deselected

import verl  # noqa: E402,F401
from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn  # noqa: E402
from verl.workers.config import FSDPActorConfig  # noqa: E402

import m2po.verl_plugin as plugin  # noqa: E402
from m2po.config import ConfigError  # noqa: E402
from m2po.losses import available_losses, get_policy_loss, loss_info, m2po_mask  # noqa: E402
from m2po.verl_plugin import M2POPolicyLossConfig, keep_mask_context  # noqa: E402

B, L = 6, 9


def actor_config(loss_mode: str, loss_agg_mode: str = "token-mean", **pl) -> FSDPActorConfig:
    """verl's FSDP actor config with its defaults, our policy-loss config inside (as Hydra builds it)."""
    pl.setdefault("mask_scope", "microbatch")
    return FSDPActorConfig(
        strategy="fsdp",
        rollout_n=8,
        ppo_micro_batch_size_per_gpu=2,
        loss_agg_mode=loss_agg_mode,
        policy_loss=M2POPolicyLossConfig(loss_mode=loss_mode, **pl),
    )


def make_batch(seed: int = 0, rows: int = B) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(rows, L, generator=g) * 2 - 0.1
    lp = old + torch.randn(rows, L, generator=g) * 0.3
    adv = torch.randn(rows, 1, generator=g).expand(rows, L).clone()
    mask = torch.ones(rows, L)
    for i in range(rows):
        mask[i, int(torch.randint(2, L + 1, (1,), generator=g)) :] = 0
    return {"log_prob": lp, "old_log_prob": old, "advantages": adv, "response_mask": mask}


def verl_call(name: str, cfg, b: dict[str, torch.Tensor], weights=None):
    """Exactly verl's call in verl.workers.utils.losses.ppo_loss."""
    lp = b["log_prob"].clone().requires_grad_(True)
    loss, metrics = get_policy_loss_fn(name)(
        old_log_prob=b["old_log_prob"],
        log_prob=lp,
        advantages=b["advantages"],
        response_mask=b["response_mask"].bool(),
        loss_agg_mode=cfg.loss_agg_mode,
        config=cfg,
        rollout_is_weights=weights,
    )
    loss.backward()
    return loss.detach(), lp.grad, metrics


def direct_call(name: str, b: dict[str, torch.Tensor], **kw):
    lp = b["log_prob"].clone().requires_grad_(True)
    loss, metrics = get_policy_loss(name)(lp, b["old_log_prob"], b["advantages"], b["response_mask"], **kw)
    loss.backward()
    return loss.detach(), lp.grad, metrics


def extra_params(name: str, b: dict[str, torch.Tensor]) -> dict:
    return {"proximal_log_prob": b["old_log_prob"]} if name == "decoupled_ppo" else {}


def test_entry_point_registers_when_verl_is_imported() -> None:
    out, _ = _probe.communicate(timeout=300)
    assert out.strip().splitlines()[-1].startswith("REGISTERED"), out[-2000:]


def test_every_loss_registered_under_its_name_and_alias() -> None:
    for name in available_losses():
        fn = get_policy_loss_fn(name)
        assert getattr(fn, "_m2po_loss", False) and fn is get_policy_loss_fn(f"m2po.{name}")
    assert set(plugin.SHADOWED) == {"gspo", "cispo"}
    assert not getattr(get_policy_loss_fn("verl.gspo"), "_m2po_loss", False)


@pytest.mark.parametrize("name", available_losses())
def test_dp1_same_loss_and_gradients(name: str) -> None:
    b = make_batch(1)
    cfg = actor_config(name)
    n_tokens = int(b["response_mask"].sum())
    cfg.global_batch_info.update(dp_size=1, batch_num_tokens=n_tokens, global_batch_size=B, loss_scale_factor=None)
    v_loss, v_grad, v_metrics = verl_call(name, cfg, b)
    kw = {"clip_low": 0.2, "clip_high": 0.2} if name == "grpo" else {}
    agg = loss_info(name).default_agg or "token-mean"  # the loss's own aggregation wins over verl's default
    d_loss, d_grad, d_metrics = direct_call(name, b, loss_agg_mode=agg, **kw, **extra_params(name, b))
    torch.testing.assert_close(v_loss, d_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(v_grad, d_grad, rtol=1e-6, atol=1e-8)
    assert v_metrics["actor/pg_clipfrac"] == pytest.approx(d_metrics["clipped_frac"])
    assert v_metrics["actor/ppo_kl"] == pytest.approx(d_metrics["kl_k1"])
    for k, v in d_metrics.items():  # docs/losses.md's metrics under actor/m2po/, a loss's own under actor/
        assert v_metrics[f"actor/{k}" if "/" in k else f"actor/m2po/{k}"] == pytest.approx(v, nan_ok=True)


@pytest.mark.parametrize("name", available_losses())
def test_micro_batch_of_a_larger_mini_batch(name: str) -> None:
    """Rank 0's micro-batch of a mini-batch spread over dp_size = 2 ranks: denominators are global."""
    full = make_batch(2, rows=4 * B)  # the mini-batch: 2 ranks x 2 micro-batches x B rows
    micro = {k: v[:B] for k, v in full.items()}
    cfg = actor_config(name, "token-mean")
    cfg.global_batch_info.update(
        dp_size=2, batch_num_tokens=int(full["response_mask"].sum()), global_batch_size=4 * B, loss_scale_factor=None
    )
    v_loss, v_grad, _ = verl_call(name, cfg, micro)
    kw = {"clip_low": 0.2, "clip_high": 0.2} if name == "grpo" else {}
    if loss_info(name).default_agg == "seq-mean-token-mean":  # gspo: one term per sequence of the mini-batch
        kw.update(loss_agg_mode="seq-mean-token-mean", global_seq_count=4 * B / 2)
    else:
        kw.update(loss_agg_mode="token-mean", global_token_count=full["response_mask"].sum().item() / 2)
    d_loss, d_grad, _ = direct_call(name, micro, **kw, **extra_params(name, micro))
    torch.testing.assert_close(v_loss, d_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(v_grad, d_grad, rtol=1e-6, atol=1e-8)


def test_grpo_matches_verls_vanilla_ppo() -> None:
    """Same clipped surrogate as verl's own 'vanilla' (its always-on dual clip c=3 is inactive here)."""
    b = make_batch(3)
    cfg = actor_config("grpo")
    cfg.global_batch_info.update(dp_size=1, batch_num_tokens=int(b["response_mask"].sum()), global_batch_size=B)
    ours = verl_call("grpo", cfg, b)
    theirs = verl_call("vanilla", cfg, b)
    torch.testing.assert_close(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1])
    assert ours[2]["actor/pg_clipfrac"] == pytest.approx(theirs[2]["actor/pg_clipfrac"])
    assert ours[2]["actor/ppo_kl"] == pytest.approx(theirs[2]["actor/ppo_kl"], rel=1e-5)


@pytest.mark.parametrize(
    "mode", ["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
)
@pytest.mark.parametrize("scale", [None, 4])
def test_aggregation_matches_verl_agg_loss(mode: str, scale) -> None:
    """grpo_notr's per-token loss is -A·r: the adapter's loss equals verl's agg_loss of it, every mode."""
    b = make_batch(4)
    cfg = actor_config("grpo_notr", mode)
    info = {"dp_size": 2, "batch_num_tokens": 3 * int(b["response_mask"].sum()), "global_batch_size": 3 * B}
    cfg.global_batch_info.update(**info, loss_scale_factor=scale)
    v_loss, _, _ = verl_call("grpo_notr", cfg, b)
    loss_mat = -b["advantages"] * torch.exp(b["log_prob"] - b["old_log_prob"])
    expected = agg_loss(loss_mat, b["response_mask"], mode, **info, loss_scale_factor=scale)
    torch.testing.assert_close(v_loss, expected.to(v_loss.dtype), rtol=1e-5, atol=1e-7)


def test_grpo_reads_verl_clip_ratios_and_dual_clip() -> None:
    b = make_batch(5)
    cfg = FSDPActorConfig(
        strategy="fsdp", rollout_n=8, ppo_micro_batch_size_per_gpu=2, clip_ratio_low=0.1, clip_ratio_high=0.3,
        clip_ratio_c=2.0, policy_loss=M2POPolicyLossConfig(loss_mode="grpo", dual_clip=True, mask_scope="microbatch"),
    )  # fmt: skip
    got = verl_call("grpo", cfg, b)
    want = direct_call("grpo", b, clip_low=0.1, clip_high=0.3, clip_c=2.0)
    torch.testing.assert_close(got[0], want[0])


def test_m2po_scopes() -> None:
    b = make_batch(6)
    micro_cfg = actor_config("m2po", tau=0.01)
    got = verl_call("m2po", micro_cfg, b)
    want = direct_call("m2po", b, tau=0.01)  # microbatch: the mask of this call's tokens
    torch.testing.assert_close(got[0], want[0])
    mini_cfg = actor_config("m2po", tau=0.01, mask_scope="minibatch")
    with pytest.raises(RuntimeError, match="minibatch"):
        verl_call("m2po", mini_cfg, b)
    keep = m2po_mask(b["log_prob"] * 1.01, b["old_log_prob"], b["advantages"], b["response_mask"], tau=0.01)
    with keep_mask_context(keep):
        got = verl_call("m2po", mini_cfg, b)
    want = direct_call("m2po", b, tau=0.01, keep_mask=keep)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


def test_rollout_is_weights_pass_through() -> None:
    b = make_batch(7)
    w = torch.rand(B, L, generator=torch.Generator().manual_seed(0)) + 0.5
    cfg = actor_config("m2po")
    cfg.global_batch_info.update(dp_size=1, batch_num_tokens=int(b["response_mask"].sum()), global_batch_size=B)
    torch.testing.assert_close(verl_call("m2po", cfg, b, w)[0], direct_call("m2po", b, rollout_is_weights=w)[0])


def test_config_validation_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="mask_scope"):
        M2POPolicyLossConfig(loss_mode="m2po", mask_scope="batch")
    with pytest.raises(ConfigError, match="clip_high"):
        M2POPolicyLossConfig(loss_mode="m2po", loss_params={"clip_high": 0.3})
    assert M2POPolicyLossConfig(loss_mode="gspo", loss_params={"clip_high": 5e-4}).loss_params == {"clip_high": 5e-4}
    assert M2POPolicyLossConfig().mask_scope == "minibatch"  # the CPU engine's default too
