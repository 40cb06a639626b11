"""The ``minibatch`` mask scope through verl's own ``ppo_loss`` and TensorDict layout (CPU, one process).

``M2POLossFn`` is exercised with verl's real ``ppo_loss`` on a mini-batch in the driver's no-padding
layout (``left_right_2_no_padding``). ``M2POTrainingWorker.attach_keep_mask`` needs verl's worker
module (cachetools, fastapi, uvicorn): that test is skipped without them; its no-grad log-prob pass
(verl's ``infer_batch``, an FSDP engine on GPUs) is replaced by a stub returning known log-probs.
"""

from __future__ import annotations

import importlib.util
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from verl import DataProto
from verl.utils import tensordict_utils as tu
from verl.workers.config import FSDPActorConfig
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import left_right_2_no_padding

from m2po.losses import get_policy_loss, m2po_mask
from m2po.verl_plugin import M2POPolicyLossConfig
from m2po.verl_plugin.adapter import KEEP_MASK_KEY, M2POLossFn

B, P, R = 6, 4, 7
TAU = 0.01


def minibatch(seed: int = 0):
    """A mini-batch as the driver sends it to update_actor, and the current policy's log-probs."""
    g = torch.Generator().manual_seed(seed)
    prompt_len = torch.randint(1, P + 1, (B,), generator=g)
    resp_len = torch.randint(1, R + 1, (B,), generator=g)
    prompt_mask = (torch.arange(P) >= P - prompt_len[:, None]).long()  # left padded
    resp_mask = (torch.arange(R) < resp_len[:, None]).long()  # right padded
    attention_mask = torch.cat([prompt_mask, resp_mask], 1)
    prompts = torch.randint(5, 50, (B, P), generator=g) * prompt_mask
    responses = torch.randint(5, 50, (B, R), generator=g) * resp_mask
    old = -torch.rand(B, R, generator=g) * 2 - 0.1
    lp = (old + torch.randn(B, R, generator=g) * 0.4) * resp_mask
    adv = torch.randn(B, 1, generator=g).expand(B, R).clone()
    dp = DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], 1),
            "attention_mask": attention_mask,
            "position_ids": (attention_mask.cumsum(-1) - 1).clamp(min=0),
            "response_mask": resp_mask,
            "old_log_probs": old,
            "advantages": adv,
        }
    )
    td = left_right_2_no_padding(dp.to_tensordict())
    # the model's per-token log-probs over each unpadded sequence: position j scores token j + 1
    seqs = []
    for i in range(B):
        v = torch.zeros(int(prompt_len[i] + resp_len[i]))
        v[int(prompt_len[i]) - 1 : int(prompt_len[i]) - 1 + int(resp_len[i])] = lp[i, : int(resp_len[i])]
        seqs.append(v)
    nested = torch.nested.as_nested_tensor(seqs, layout=torch.jagged)
    return td, nested, lp, old, adv, resp_mask


def actor_config(scope: str) -> FSDPActorConfig:
    pl = M2POPolicyLossConfig(loss_mode="m2po", tau=TAU, mask_scope=scope)
    return FSDPActorConfig(strategy="fsdp", rollout_n=8, ppo_micro_batch_size_per_gpu=2, policy_loss=pl)


def test_loss_fn_passes_the_minibatch_mask_through_verls_ppo_loss() -> None:
    td, nested, lp, old, adv, mask = minibatch()
    keep = m2po_mask(lp, old, adv, mask, tau=TAU)
    assert not bool(keep.all())
    td[KEEP_MASK_KEY] = keep
    n_tokens = int(mask.sum())
    tu.assign_non_tensor(td, dp_size=1, batch_num_tokens=n_tokens, global_batch_size=B)
    lp_leaf = nested.clone().requires_grad_(True)
    loss_fn = M2POLossFn(partial(ppo_loss, config=actor_config("minibatch")))
    loss, metrics = loss_fn(model_output={"log_probs": lp_leaf}, data=td)
    want, _ = get_policy_loss("m2po")(lp, old, adv, mask, tau=TAU, keep_mask=keep, global_token_count=n_tokens)
    torch.testing.assert_close(loss, want)
    assert "actor/m2po/masked_frac" in metrics
    # without the wrapper (verl's plain loss function) the minibatch scope refuses to guess
    with pytest.raises(RuntimeError, match="minibatch"):
        ppo_loss(actor_config("minibatch"), {"log_probs": nested}, td)
    # microbatch scope: the mask of this call's tokens, i.e. the same here (one micro-batch)
    loss2, _ = M2POLossFn(partial(ppo_loss, config=actor_config("microbatch")))({"log_probs": nested}, td)
    torch.testing.assert_close(loss2, want)


_RUNTIME = all(importlib.util.find_spec(m) is not None for m in ("cachetools", "fastapi", "uvicorn"))


@pytest.mark.skipif(not _RUNTIME, reason="verl's worker module needs cachetools, fastapi and uvicorn")
def test_worker_attaches_the_minibatch_mask(monkeypatch) -> None:
    from verl.workers.engine_workers import TrainingWorker

    from m2po.verl_plugin.workers import M2POTrainingWorker, minibatch_tau

    td, nested, lp, old, adv, mask = minibatch(1)
    seen = {}

    def fake_infer_batch(self, data):  # verl's no-grad forward, as the FSDP engine would return it
        seen["keys"] = set(data.keys())
        seen["compute_loss"] = tu.get(data, "compute_loss")
        seen["micro_batch_size_per_gpu"] = tu.get(data, "micro_batch_size_per_gpu")
        return tu.get_tensordict(tensor_dict={"log_probs": nested}, non_tensor_dict={"metrics": {}})

    class FakeEngine:
        ulysses_sequence_parallel_size = 1

        def get_data_parallel_group(self):
            return None

    monkeypatch.setattr(TrainingWorker, "infer_batch", fake_infer_batch)
    worker = object.__new__(M2POTrainingWorker)
    worker.engine, worker.device_name = FakeEngine(), "cpu"
    worker.engine_config = SimpleNamespace(
        use_dynamic_bsz=False, max_token_len_per_gpu=None, micro_batch_size_per_gpu=2
    )
    worker.loss_fn = M2POLossFn(partial(ppo_loss, config=actor_config("minibatch")))
    assert minibatch_tau(worker.loss_fn.actor_config) == TAU
    assert minibatch_tau(actor_config("microbatch")) is None
    # the mask's τ is the loss's own: loss_params override policy_loss.tau for both
    pl = M2POPolicyLossConfig(loss_mode="m2po", tau=TAU, mask_scope="minibatch", loss_params={"tau": 0.3})
    overridden = FSDPActorConfig(strategy="fsdp", rollout_n=8, ppo_micro_batch_size_per_gpu=2, policy_loss=pl)
    assert minibatch_tau(overridden) == 0.3
    worker.attach_keep_mask(td, TAU)
    assert seen["compute_loss"] is False and KEEP_MASK_KEY not in seen["keys"]
    assert seen["micro_batch_size_per_gpu"] == 2  # the no-grad pass splits like the training call
    assert "compute_loss" not in td.keys()  # the pre-pass's bookkeeping stays off the training batch
    assert torch.equal(td[KEEP_MASK_KEY], m2po_mask(lp, old, adv, mask, tau=TAU))
    # verl's micro-batch split carries the mask along with the rows
    micro = tu.chunk_tensordict(td, 2)
    assert torch.equal(torch.cat([m[KEEP_MASK_KEY] for m in micro]), td[KEEP_MASK_KEY])
