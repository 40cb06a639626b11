"""Tests for m2po.engine.sampler: KV cache vs no cache, log-prob agreement with the training
forward, EOS stopping/padding, left-padding invariance."""

from __future__ import annotations

import pytest
import torch

from m2po.engine.model import MODEL_SIZES, KVCache, TinyTransformer, sequence_log_probs
from m2po.engine.sampler import left_pad, sample, sample_without_cache
from m2po.engine.tokenizer import CharTokenizer

torch.set_num_threads(1)
TOK = CharTokenizer()
QUESTIONS = ["1+2=", "37+48=", "05+99=", "9=", "12*34=", "0+0="]


class _EosBiased(TinyTransformer):
    """A TinyTransformer whose EOS logit is shifted by ``bias``: controls when rows stop."""

    def __init__(self, bias: float) -> None:
        torch.manual_seed(0)
        super().__init__(MODEL_SIZES["0.1M"])
        self.bias = bias

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, past: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        logits, present = super().forward(input_ids, attention_mask, past)
        logits = logits.clone()
        logits[..., TOK.eos_id] += self.bias
        return logits, present


def _model(size: str = "0.1M") -> TinyTransformer:
    torch.manual_seed(0)
    return TinyTransformer(MODEL_SIZES[size]).eval()


def _prompts(qs: list[str] = QUESTIONS) -> list[list[int]]:
    return [TOK.encode_prompt(q) for q in qs]


def _max_logprob_diff(model: TinyTransformer, roll, temperature: float = 1.0) -> float:  # noqa: ANN001
    lp, ent = sequence_log_probs(model, roll.input_ids, roll.attention_mask, roll.response_start, temperature)
    assert torch.isfinite(ent).all()
    return float((lp.detach() - roll.sampler_log_probs)[roll.response_mask].abs().max())


@pytest.mark.parametrize("size", ["0.1M", "1M"])
@pytest.mark.parametrize("greedy", [False, True])
def test_cache_and_no_cache_give_identical_tokens(size: str, greedy: bool) -> None:
    m = _EosBiased(1.0) if size == "0.1M" else _model(size)
    prompts = _prompts() * 4
    kw = dict(greedy=greedy, tokenizer=TOK)
    a = sample(m, prompts, 12, generator=torch.Generator().manual_seed(7), **kw)
    b = sample_without_cache(m, prompts, 12, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a.input_ids, b.input_ids)
    assert torch.equal(a.response_mask, b.response_mask)
    assert a.response_texts == b.response_texts
    torch.testing.assert_close(a.sampler_log_probs, b.sampler_log_probs, atol=1e-5, rtol=0)


def test_same_seed_same_rollout_different_seed_differs() -> None:
    m = _model()
    a = sample(m, _prompts(), 10, generator=torch.Generator().manual_seed(1), tokenizer=TOK)
    b = sample(m, _prompts(), 10, generator=torch.Generator().manual_seed(1), tokenizer=TOK)
    c = sample(m, _prompts(), 10, generator=torch.Generator().manual_seed(2), tokenizer=TOK)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.sampler_log_probs, b.sampler_log_probs)
    assert not torch.equal(a.input_ids, c.input_ids)


@pytest.mark.parametrize("size", ["0.1M", "1M"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_log_probs_match_training_forward(size: str, temperature: float) -> None:
    """Staleness 0 must mean ratio 1: the training forward reproduces the behaviour log-probs."""
    m = _EosBiased(2.0) if size == "0.1M" else _model(size)
    roll = sample(m, _prompts() * 8, 14, temperature, torch.Generator().manual_seed(3), tokenizer=TOK)
    assert roll.response_mask.any(dim=1).all()
    assert _max_logprob_diff(m, roll, temperature) < 1e-5
    assert (roll.sampler_log_probs[~roll.response_mask] == 0).all()
    assert (roll.sampler_log_probs[roll.response_mask] <= 0).all()


def test_eos_stopping_and_padding() -> None:
    m = _EosBiased(3.0)
    roll = sample(m, _prompts() * 10, 15, generator=torch.Generator().manual_seed(11), tokenizer=TOK)
    resp, rmask = roll.responses, roll.response_mask
    lengths = rmask.sum(1)
    stopped = torch.zeros(len(resp), dtype=torch.bool)
    for i in range(len(resp)):
        n = int(lengths[i])
        assert n >= 1
        assert rmask[i, :n].all() and not rmask[i, n:].any()  # mask is a prefix
        eos_pos = (resp[i, :n] == TOK.eos_id).nonzero().flatten().tolist()
        if eos_pos:  # EOS is the last generated token, pad after it
            assert eos_pos == [n - 1]
            stopped[i] = True
        else:
            assert n == resp.shape[1]  # ran to the end of the block
        assert (resp[i, n:] == TOK.pad_id).all()
        assert roll.response_texts[i] == TOK.decode(resp[i, : n - 1 if eos_pos else n].tolist())
    assert stopped.any() and (lengths.min() < lengths.max())
    # the loop ran only as long as some row was still generating
    assert resp.shape[1] == int(lengths.max())
    assert torch.equal(roll.attention_mask[:, roll.response_start :], rmask)


def test_loop_stops_early_when_all_rows_finish() -> None:
    roll = sample(_EosBiased(100.0), _prompts(), 20, generator=torch.Generator().manual_seed(0), tokenizer=TOK)
    assert roll.responses.shape[1] == 1
    assert (roll.responses[:, 0] == TOK.eos_id).all() and roll.response_mask.all()
    assert roll.response_texts == [""] * len(QUESTIONS)


def test_layout_left_padded_prompt_block() -> None:
    prompts = _prompts()
    roll = sample(_model(), prompts, 5, generator=torch.Generator().manual_seed(0), tokenizer=TOK)
    width = max(len(p) for p in prompts)
    assert roll.response_start == width
    ids, mask = left_pad(prompts, TOK.pad_id)
    assert torch.equal(roll.input_ids[:, :width], ids) and torch.equal(roll.attention_mask[:, :width], mask)
    for i, p in enumerate(prompts):
        assert roll.input_ids[i, width - len(p) : width].tolist() == p


@pytest.mark.parametrize("size", ["0.1M", "1M"])
def test_left_padding_invariance_of_sampling(size: str) -> None:
    """A prompt decodes the same (greedy) and gets the same log-probs alone or in a padded batch."""
    m = _model(size)
    short = _prompts(["1+2="])
    batch = _prompts(["1+2=", "37+48=", "12*34="])
    alone = sample(m, short, 10, greedy=True, tokenizer=TOK)
    mixed = sample(m, batch, 10, greedy=True, tokenizer=TOK)
    n = int(alone.response_mask[0].sum())
    assert torch.equal(alone.responses[0, :n], mixed.responses[0, :n])
    assert int(mixed.response_mask[0].sum()) == n
    torch.testing.assert_close(alone.sampler_log_probs[0, :n], mixed.sampler_log_probs[0, :n], atol=1e-5, rtol=0)
    # sampled (not greedy) rollout: re-scoring row 0 with a different amount of padding agrees
    roll = sample(m, batch, 10, generator=torch.Generator().manual_seed(4), tokenizer=TOK)
    extra = 3
    ids = torch.cat([torch.full((1, extra), TOK.pad_id), roll.input_ids[:1]], dim=1)
    mask = torch.cat([torch.zeros(1, extra, dtype=torch.bool), roll.attention_mask[:1]], dim=1)
    lp, _ = sequence_log_probs(m, ids, mask, roll.response_start + extra)
    rm = roll.response_mask[0]
    torch.testing.assert_close(lp[0][rm].detach(), roll.sampler_log_probs[0][rm], atol=1e-5, rtol=0)


def test_argument_validation() -> None:
    m = _model()
    with pytest.raises(ValueError, match="Generator"):
        sample(m, _prompts(), 4, tokenizer=TOK)
    with pytest.raises(ValueError, match="max_len"):
        sample(m, _prompts(), 40, greedy=True, tokenizer=TOK)
    with pytest.raises(ValueError, match="eos_id"):
        sample(m, _prompts(), 4, greedy=True)
    with pytest.raises(ValueError, match="empty"):
        sample(m, [[]], 4, greedy=True, tokenizer=TOK)
    roll = sample(m, _prompts(), 4, greedy=True, eos_id=TOK.eos_id, pad_id=TOK.pad_id)
    assert roll.response_texts == []


def test_model_training_mode_restored() -> None:
    m = _model().train()
    sample(m, _prompts(), 3, greedy=True, tokenizer=TOK)
    assert m.training


class _Counting(_EosBiased):
    """Counts forward passes; an EOS bias of -100 keeps every row generating to ``max_new_tokens``."""

    def __init__(self) -> None:
        super().__init__(-100.0)
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, past=None):  # noqa: ANN001, ANN201
        self.calls += 1
        return super().forward(input_ids, attention_mask, past)


@pytest.mark.parametrize("sampler", [sample, sample_without_cache])
def test_one_forward_per_drawn_token_and_one_draw_per_step(sampler) -> None:  # noqa: ANN001
    """T tokens need the prefill and T - 1 steps: no forward pass whose logits nobody reads. The generator
    advances by exactly one multinomial draw over the batch per step (replayed here on the same logits)."""
    m = _Counting()
    prompts, steps = _prompts(), 7
    gen = torch.Generator().manual_seed(5)
    roll = sampler(m, prompts, steps, generator=gen, tokenizer=TOK)
    assert roll.response_mask.all() and roll.responses.shape[1] == steps
    assert m.calls == steps
    replay = torch.Generator().manual_seed(5)
    logits, _ = super(_Counting, m).forward(roll.input_ids, roll.attention_mask)
    for t in range(steps):
        probs = torch.softmax(logits[:, roll.response_start - 1 + t].float(), dim=-1)
        tok = torch.multinomial(probs, 1, generator=replay).squeeze(1)
        assert torch.equal(tok, roll.responses[:, t])
    assert torch.equal(gen.get_state(), replay.get_state())
