"""Generation in the CPU mode: HF ``generate`` standing in for vLLM behind verl's own agent loop.

verl 0.9.1 generates only through rollout *servers* (vLLM, SGLang, TRT-LLM) driven by its agent loop
(``AgentLoopManager`` → ``AgentLoopWorker`` → ``LLMServerClient.generate(prompt_ids, sampling_params)``).
None of them runs on a CPU, so the CPU mode replaces exactly the server and nothing around it:

* :class:`HFRollout` is registered in verl's rollout registry as ``rollout.name=hf`` (mode ``async``),
  so verl's ``ActorRolloutRefWorker.init_model`` builds it where it would build vLLM's adapter. It holds
  a Hugging Face copy of the actor and receives the trained weights through verl's own weight sync
  (``ActorRolloutRefWorker.update_weights``, checkpoint-engine backend ``naive``), which streams the FSDP
  engine's ``get_per_tensor_param()`` into :meth:`HFRollout.update_weights` — what vLLM receives.
* :class:`HFGenerateClient` is the ``LLMServerClient`` the agent loop calls: one ``generate`` per
  request, token ids in, token ids (and log-probs if asked) out, like vLLM's ``/generate``.
* :class:`CPUAgentLoopManager` is verl's ``AgentLoopManager`` with its Ray actors replaced by one
  in-process verl ``AgentLoopWorker`` per data-parallel rank: each rank runs the agent loop (prompt
  templating, padding, the reward loop) on its chunk of the batch and the ranks all-gather the results,
  as the manager gathers its workers'. The reward is verl's ``RewardLoopWorker`` (our
  ``compute_score``), called in-process (:class:`InProcessActor`).

Differences from vLLM that matter: requests are generated one at a time (no continuous batching), in
the rollout dtype (``rollout.dtype``), with the sampling parameters vLLM gets (temperature, top-p,
top-k; greedy when temperature is 0). Sampling is seeded per rank (``rollout.seed + rank``), on the
rollout's device (the CPU, or the rank's GPU when the loop runs on CUDA).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from verl import DataProto
from verl.experimental.agent_loop import AgentLoopManager, AgentLoopWorker
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import TokenOutput

__all__ = [
    "CPUAgentLoopManager",
    "HFGenerateClient",
    "HFRollout",
    "InProcessActor",
    "register_hf_rollout",
    "run_coroutine",
]

ROLLOUT_NAME = "hf"


def run_coroutine(coro: Any) -> Any:
    """Run ``coro`` to completion on this process's one event loop. verl's async objects keep a reference
    to the loop they were built in (a Ray actor has one loop for its lifetime), so the CPU mode never
    uses ``asyncio.run``, which would make a new loop per call."""
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop.run_until_complete(coro)


def register_hf_rollout() -> None:
    """Register :class:`HFRollout` as verl's rollout ``hf`` (verl has no public register function; its
    ``get_rollout_class`` reads this table by fully qualified name)."""
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = f"{__name__}.HFRollout"


class HFRollout(BaseRollout):
    """The rollout engine of the CPU mode: a Hugging Face copy of the actor, synced by verl's weight sync."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, model_config, device_mesh)
        from transformers import AutoModelForCausalLM
        from verl.utils.device import get_device_id, get_device_name

        dtype = getattr(torch, str(self.config.dtype).replace("torch.", ""))
        name = get_device_name()
        self.device = torch.device("cpu") if name == "cpu" else torch.device(name, get_device_id())
        self.model = (
            AutoModelForCausalLM.from_pretrained(self.model_config.local_path, dtype=dtype, attn_implementation="sdpa")
            .to(self.device)
            .eval()
        )
        self.tokenizer = self.model_config.tokenizer
        self.global_steps: int | None = None
        self.weight_syncs = 0
        self.rng = _DeviceRNG(self.device, int(self.config.get("seed", 0)) + _rank())

    async def resume(self, tags: list[str]) -> None:
        """Nothing to page back in: host memory is not released between steps."""

    async def release(self) -> None:
        """Nothing to release (see :meth:`resume`)."""

    async def update_weights(self, weights: Iterable[tuple[str, torch.Tensor]], **kwargs: Any) -> None:
        """Copy the actor's full tensors (``get_per_tensor_param``, HF names) into the rollout model."""
        if kwargs.get("wire_format", "named_tensors") != "named_tensors":
            raise NotImplementedError("the CPU rollout receives full named tensors only (checkpoint engine 'naive')")
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError("LoRA adapters are not supported by the CPU rollout")
        state = self.model.state_dict()
        seen = set()
        for name, tensor in weights:
            if name not in state:
                raise KeyError(f"weight sync: the actor sent {name!r}, which the rollout model does not have")
            state[name].copy_(tensor.detach().to(device=state[name].device, dtype=state[name].dtype))
            seen.add(name)
        tied = {"lm_head.weight"} if getattr(self.model.config, "tie_word_embeddings", False) else set()
        missing = set(dict(self.model.named_parameters())) - seen - tied
        if missing:
            raise KeyError(f"weight sync: no tensor received for {sorted(missing)[:5]}")
        self.global_steps = kwargs.get("global_steps", self.global_steps)
        self.weight_syncs += 1

    @torch.no_grad()
    def generate(self, prompt_ids: list[int], sampling_params: dict[str, Any]) -> TokenOutput:
        """One request, as vLLM's server answers it: response token ids up to EOS or the length limit."""
        temperature = float(sampling_params.get("temperature", 1.0))
        max_new = int(self.config.response_length)
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        kwargs: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            top_k = int(sampling_params.get("top_k", -1) or -1)
            kwargs.update(temperature=temperature, top_p=float(sampling_params.get("top_p", 1.0)))
            kwargs["top_k"] = top_k if top_k > 0 else None
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        with self.rng:
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new,
                eos_token_id=eos,
                pad_token_id=pad,
                return_dict_in_generate=True,
                output_logits=bool(sampling_params.get("logprobs")),
                **kwargs,
            )
        tokens = out.sequences[0, ids.shape[1] :].tolist()
        if eos is not None and eos in tokens:
            tokens = tokens[: tokens.index(eos) + 1]
        log_probs = None
        if sampling_params.get("logprobs"):
            logits = torch.stack(out.logits, 1)[0, : len(tokens)].float()
            chosen = torch.tensor(tokens, device=logits.device)[:, None]
            log_probs = logits.log_softmax(-1).gather(-1, chosen).squeeze(-1).tolist()
        stop = "completed" if len(tokens) < max_new or (tokens and tokens[-1] == eos) else "length"
        return TokenOutput(
            token_ids=tokens, log_probs=log_probs, stop_reason=stop, extra_fields={"global_steps": self.global_steps}
        )


class _DeviceRNG:
    """This rollout's own seeded RNG stream on ``device``, made the global one inside the block (HF
    ``generate`` samples from the global generator of the device its tensors are on)."""

    def __init__(self, device: torch.device, seed: int) -> None:
        self.device = device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            self.state = self._get()

    def _get(self) -> torch.Tensor:
        return torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.get_rng_state()

    def _set(self, state: torch.Tensor) -> None:
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state, self.device)
        else:
            torch.set_rng_state(state)

    def __enter__(self) -> None:
        self.saved = self._get()
        self._set(self.state)

    def __exit__(self, *exc: Any) -> None:
        self.state = self._get()
        self._set(self.saved)


class HFGenerateClient:
    """The ``LLMServerClient`` of verl's agent loop, answered by this rank's :class:`HFRollout`."""

    def __init__(self, rollout: HFRollout) -> None:
        self.rollout = rollout

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict, **kwargs: Any):
        for key in ("image_data", "video_data", "audio_data"):
            if kwargs.get(key):
                raise NotImplementedError("the CPU rollout is text-only")
        output = self.rollout.generate(prompt_ids, sampling_params)
        steps = output.extra_fields.get("global_steps")
        output.extra_fields.setdefault("min_global_steps", steps)
        output.extra_fields.setdefault("max_global_steps", steps)
        return output


class InProcessActor:
    """An object called like a Ray actor handle (``handle.method.remote(...)`` → awaitable), in-process."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._obj, name)

        class _Method:
            @staticmethod
            def remote(*args: Any, **kwargs: Any) -> Any:
                result = method(*args, **kwargs)
                if inspect.isawaitable(result):
                    return result
                done = asyncio.get_event_loop().create_future()
                done.set_result(result)
                return done

        return _Method()


class CPUAgentLoopManager(AgentLoopManager):
    """verl's ``AgentLoopManager`` with one in-process ``AgentLoopWorker`` per data-parallel rank.

    Every rank calls :meth:`generate_sequences` with the whole batch (SPMD); rank ``r`` generates the
    ``r``-th chunk (``DataProto.chunk``, as the manager splits over its workers) and the ranks all-gather
    the chunks in rank order, so every rank returns the same batch."""

    agent_loop_workers_class = AgentLoopWorker  # the base class would wrap it in ray.remote

    def __init__(self, config: Any, llm_client: Any, reward_loop_worker_handles: list | None = None) -> None:
        super().__init__(config, llm_client, None, reward_loop_worker_handles)
        self.worker = AgentLoopWorker(config, llm_client, None, reward_loop_worker_handles)
        self.agent_loop_workers = [self.worker]

    def generate_sequences(self, prompts: DataProto) -> DataProto:  # type: ignore[override]
        if "priority" not in prompts.non_tensor_batch:
            prompts.non_tensor_batch["priority"] = np.arange(len(prompts), dtype=np.int64)
        rank, world = _rank(), _world()
        chunk = prompts.chunk(world)[rank]
        mine = run_coroutine(self.worker.generate_sequences(chunk))
        outputs = [mine]
        if world > 1:
            outputs = [None] * world
            dist.all_gather_object(outputs, mine)
        output = DataProto.concat(outputs)
        metrics = [o.meta_info.pop("metrics") for o in outputs]
        timing = self._performance_metrics(metrics, output)
        output.meta_info = {"timing": timing, **outputs[0].meta_info}
        return output


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
