"""Generation backends: the tiny engine's checkpoints and a tiny random HF model built locally.

The HF model and its character tokenizer are created in the test (no hub, no files from outside):
what is checked is the harness's side — chat template applied, left padding, k samples per prompt,
seeded reproducibility, the end-of-turn token in the stop set. vLLM cannot run on this CPU machine
and is not tested here.
"""

from __future__ import annotations

import string

import pytest
import torch

from m2po.engine.model import MODEL_SIZES, TinyTransformer
from m2po.eval.backends import GenParams, GenRequest, make_backend
from m2po.eval.backends.tiny import load_tiny_model

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]


def _tiny_hf_model(path) -> None:
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - {"\x0b", "\x0c"})
    vocab = {t: i for i, t in enumerate([*SPECIALS, *chars])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(SPECIALS)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<|im_start|>", eos_token="<pad>"
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)


def test_hf_backend(tmp_path):
    _tiny_hf_model(tmp_path / "m")
    be = make_backend("hf", str(tmp_path / "m"), batch_size=3)
    assert be.tokenizer.padding_side == "left"
    assert be.tokenizer.convert_tokens_to_ids("<|im_end|>") in be.eos_ids  # end of turn stops generation
    msgs = [{"role": "user", "content": "What is 1+1?"}]
    assert be.render(msgs).endswith("<|im_start|>assistant\n")
    reqs = [GenRequest(msgs, 2, seed=1), GenRequest([{"role": "user", "content": "a much longer prompt " * 3}], 3, 2)]
    params = GenParams(temperature=1.0, top_p=1.0, max_new_tokens=6)
    a = be.generate(reqs, params)
    assert [len(x) for x in a] == [2, 3] and all(isinstance(t, str) for x in a for t in x)
    assert be.generate(reqs, params) == a  # seeded
    assert be.generate([GenRequest(msgs, 2, seed=99)], params)[0] != a[0]
    assert len(be.model_fingerprint) == 16


def test_tiny_backend_random_and_seeded():
    be = make_backend("tiny", "tiny:0.1M:3")
    assert be.model_fingerprint == "random-0.1M-seed3"
    req = [GenRequest([{"role": "user", "content": "12+30="}], 5, seed=7)]
    out = be.generate(req, GenParams(max_new_tokens=4))
    assert len(out[0]) == 5 and out == be.generate(req, GenParams(max_new_tokens=4))
    with pytest.raises(ValueError, match="vocabulary"):
        be.generate([GenRequest([{"role": "user", "content": "What is x?"}], 1, 0)], GenParams())
    with pytest.raises(ValueError, match="nucleus"):
        be.generate(req, GenParams(top_p=0.7))


@pytest.mark.parametrize("size", ["0.1M", "1M"])
def test_tiny_backend_from_state_dict(tmp_path, size):
    """``final_model.pt`` is a bare state dict: the shape, heads included, is recovered from it."""
    torch.manual_seed(0)
    model = TinyTransformer(MODEL_SIZES[size])
    torch.save(model.state_dict(), tmp_path / "final_model.pt")
    loaded, fp = load_tiny_model(str(tmp_path / "final_model.pt"))
    assert loaded.config == MODEL_SIZES[size]
    x = torch.tensor([[1, 4, 5, 6]])
    assert torch.equal(loaded(x)[0], model.eval()(x)[0])
    assert len(fp) == 16


def test_tiny_backend_from_warm_start_file(tmp_path):
    import dataclasses

    model = TinyTransformer(MODEL_SIZES["0.1M"])
    ckpt = {"model_config": dataclasses.asdict(model.config), "state_dict": model.state_dict(), "version": 1}
    torch.save(ckpt, tmp_path / "sft.pt")
    loaded, _ = load_tiny_model(str(tmp_path / "sft.pt"))
    assert loaded.config == model.config
    with pytest.raises(FileNotFoundError):
        load_tiny_model(str(tmp_path / "missing.pt"))


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("nope", "x")


def test_vllm_request_building_and_output_parsing():
    """What can be checked without vLLM (GPU only): each request's sampling arguments, and the parsing of
    LLM.generate's outputs (RequestOutput.outputs[i].text, one output per prompt in order)."""
    from types import SimpleNamespace

    from m2po.eval.backends.vllm import sampling_kwargs, texts_of

    reqs = [GenRequest([{"role": "user", "content": "1+1"}], 3, seed=11), GenRequest([], 1, seed=12)]
    kws = sampling_kwargs(reqs, GenParams(temperature=1.0, top_p=0.7, max_new_tokens=2560))
    assert kws == [
        {"n": 3, "temperature": 1.0, "top_p": 0.7, "max_tokens": 2560, "seed": 11},
        {"n": 1, "temperature": 1.0, "top_p": 0.7, "max_tokens": 2560, "seed": 12},
    ]

    def output(*texts):
        return SimpleNamespace(outputs=[SimpleNamespace(text=t) for t in texts])

    assert texts_of([output("a", "b", "c"), output("d")], reqs) == [["a", "b", "c"], ["d"]]
    with pytest.raises(RuntimeError, match="2 completions for prompt 0, asked 3"):
        texts_of([output("a", "b"), output("d")], reqs)
    with pytest.raises(RuntimeError, match="1 outputs for 2 prompts"):
        texts_of([output("a", "b", "c")], reqs)
