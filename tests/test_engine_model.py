"""Tests for m2po.engine.tokenizer and m2po.engine.model (tiny transformer, training forward)."""

from __future__ import annotations

import pytest
import torch

from m2po.engine.model import MODEL_SIZES, TinyModelConfig, TinyTransformer, sequence_log_probs
from m2po.engine.tokenizer import CharTokenizer

torch.set_num_threads(1)


def _model(size: str = "0.1M", seed: int = 0) -> TinyTransformer:
    torch.manual_seed(seed)
    return TinyTransformer(MODEL_SIZES[size]).eval()


# ---------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_roundtrip_and_specials() -> None:
    tok = CharTokenizer()
    assert len({tok.pad_id, tok.bos_id, tok.eos_id}) == 3
    text = "37+48= 85-1*2?"
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(i not in (tok.pad_id, tok.bos_id, tok.eos_id) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.encode_prompt("1+2=") == [tok.bos_id, *tok.encode("1+2=")]


def test_tokenizer_decode_stops_at_eos_and_skips_pad_bos() -> None:
    tok = CharTokenizer()
    ids = [tok.pad_id, tok.bos_id, *tok.encode("12"), tok.pad_id, *tok.encode("3"), tok.eos_id, *tok.encode("99")]
    assert tok.decode(ids) == "123"
    assert tok.decode([tok.eos_id, *tok.encode("5")]) == ""


def test_tokenizer_unknown_character_names_it() -> None:
    with pytest.raises(ValueError, match="'x'"):
        CharTokenizer().encode("1x2")


def test_presets_match_tokenizer_and_sizes() -> None:
    tok = CharTokenizer()
    n01 = TinyTransformer(MODEL_SIZES["0.1M"]).num_parameters()
    n1 = TinyTransformer(MODEL_SIZES["1M"]).num_parameters()
    assert all(c.vocab_size == tok.vocab_size for c in MODEL_SIZES.values())
    assert 70_000 < n01 < 150_000
    assert 700_000 < n1 < 1_500_000
    # independent count for 0.1M: embeddings + per layer (2 LN, qkv, proj, 2 MLP linears) + final LN
    c = MODEL_SIZES["0.1M"]
    d, f = c.d_model, c.d_ff
    per_layer = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
    assert n01 == c.vocab_size * d + c.max_len * d + c.n_layers * per_layer + 2 * d


# ---------------------------------------------------------------------------------------- model


def test_causality() -> None:
    """Changing a later token never changes earlier logits."""
    m = _model()
    ids = torch.randint(3, 19, (2, 10), generator=torch.Generator().manual_seed(0))
    ids2 = ids.clone()
    ids2[:, 6:] = torch.randint(3, 19, (2, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, _ = m(ids)
        b, _ = m(ids2)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_left_padding_invariance() -> None:
    """A row's logits at its real positions do not depend on how much left padding it has."""
    m = _model()
    gen = torch.Generator().manual_seed(0)
    row = torch.randint(3, 19, (7,), generator=gen)
    with torch.no_grad():
        ref, _ = m(row[None])
        for pad in (1, 3, 8):
            ids = torch.cat([torch.zeros(pad, dtype=torch.long), row])[None]
            mask = torch.cat([torch.zeros(pad, dtype=torch.bool), torch.ones(7, dtype=torch.bool)])[None]
            out, _ = m(ids, mask)
            assert torch.isfinite(out).all()
            torch.testing.assert_close(out[0, pad:], ref[0], atol=1e-5, rtol=1e-5)
        # and inside a batch whose other rows are longer
        other = torch.randint(3, 19, (2, 12), generator=gen)
        ids = torch.cat([torch.cat([torch.zeros(5, dtype=torch.long), row])[None], other])
        mask = torch.ones_like(ids, dtype=torch.bool)
        mask[0, :5] = False
        out, _ = m(ids, mask)
        torch.testing.assert_close(out[0, 5:], ref[0], atol=1e-5, rtol=1e-5)


def test_kv_cache_logits_match_full_forward() -> None:
    """Prefill + one-token steps with the cache reproduce the full forward's logits."""
    m = _model("1M")
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 19, (3, 12), generator=gen)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, :4] = False  # left padding
    mask[1, :1] = False
    mask[2, 10:] = False  # right padding (finished row) must also be honoured
    with torch.no_grad():
        full, _ = m(ids, mask)
        logits, past = m(ids[:, :5], mask[:, :5])
        steps = [logits]
        for t in range(5, 12):
            logits, past = m(ids[:, t : t + 1], mask[:, : t + 1], past)
            steps.append(logits)
    cached = torch.cat(steps, dim=1)
    real = mask.clone()
    torch.testing.assert_close(cached[real], full[real], atol=1e-5, rtol=1e-5)


def test_forward_rejects_bad_shapes_and_long_sequences() -> None:
    m = TinyTransformer(TinyModelConfig(vocab_size=19, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=8))
    with pytest.raises(ValueError, match="attention_mask"):
        m(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="max_len"):
        m(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        TinyModelConfig(vocab_size=19, d_model=10, n_layers=1, n_heads=3, d_ff=8)


def test_sequence_log_probs_against_manual_softmax() -> None:
    """Oracle: log p and entropy from explicit per-position softmax in float64."""
    m = _model()
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 19, (2, 9), generator=gen)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, :2] = False
    lp, ent = sequence_log_probs(m, ids, mask, response_start=6)
    assert lp.shape == ent.shape == (2, 3) and lp.dtype == torch.float32
    with torch.no_grad():
        logits, _ = m(ids, mask)
    for b in range(2):
        for t in range(3):
            z = logits[b, 6 + t - 1].double()
            p = torch.exp(z - z.max()) / torch.exp(z - z.max()).sum()
            assert abs(float(lp[b, t].detach()) - float(torch.log(p[ids[b, 6 + t]]))) < 1e-5
            assert abs(float(ent[b, t].detach()) - float(-(p * p.log()).sum())) < 1e-5
    # differentiable: this is the pass the RL loop back-propagates through
    lp.sum().backward()
    assert m.tok_emb.weight.grad is not None and torch.isfinite(m.tok_emb.weight.grad).all()


def test_sequence_log_probs_temperature() -> None:
    m = _model()
    ids = torch.randint(3, 19, (1, 8), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids, dtype=torch.bool)
    lp2, _ = sequence_log_probs(m, ids, mask, 5, temperature=2.0)
    with torch.no_grad():
        logits, _ = m(ids, mask)
    expect = torch.log_softmax(logits[:, 4:7] / 2.0, -1).gather(-1, ids[:, 5:, None]).squeeze(-1)
    torch.testing.assert_close(lp2, expect)
