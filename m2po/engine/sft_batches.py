"""Teacher-forcing batches of the supervised warm start (``sft.py``), with the noise that leaves room for RL.

``AnswerBatches`` (the task's ``"answer"`` format) replaces each answer digit, with probability
``corrupt_frac``, by a different random digit; ``WorkedBatches`` (the ``"worked"`` format) slips each
column sum by -1 or +1 instead and lets the carries and the answer follow. Why the noise, and why
there: ``sft.py``'s module docstring. Both lay a batch out like a rollout: the left-padded
``[bos] + question`` block, then the right-padded target with its EOS, so SFT trains exactly the
positions RL later samples.
"""

from __future__ import annotations

import torch

from .sampler import left_pad
from .task import worked_solution
from .tokenizer import CharTokenizer


class AnswerBatches:
    """Pre-tensorised train split; draws teacher-forcing batches with fresh digit corruption.

    Layout matches a rollout: left-padded ``[bos] + question`` block, then ``answer + [eos]``
    right-padded, so SFT trains exactly the positions RL later samples.
    """

    def __init__(self, problems: list[dict[str, str]], tok: CharTokenizer) -> None:
        self.prompt_ids, self.prompt_mask = left_pad([tok.encode_prompt(p["question"]) for p in problems], tok.pad_id)
        targets = [[*tok.encode(p["answer"]), tok.eos_id] for p in problems]
        width = max(len(t) for t in targets)
        self.target_ids = torch.full((len(problems), width), tok.pad_id, dtype=torch.long)
        self.target_mask = torch.zeros((len(problems), width), dtype=torch.bool)
        for i, t in enumerate(targets):
            self.target_ids[i, : len(t)] = torch.tensor(t)
            self.target_mask[i, : len(t)] = True
        self.digit_ids = torch.tensor(tok.encode("0123456789"))
        # value_of[id] = digit value, -1 for non-digits
        self.value_of = torch.full((tok.vocab_size,), -1, dtype=torch.long)
        self.value_of[self.digit_ids] = torch.arange(10)

    def draw(
        self, batch_size: int, corrupt_frac: float, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        idx = torch.randint(len(self.prompt_ids), (batch_size,), generator=gen)
        target = self.target_ids[idx].clone()
        values = self.value_of[target]
        flip = (torch.rand(target.shape, generator=gen) < corrupt_frac) & (values >= 0)
        shift = torch.randint(1, 10, target.shape, generator=gen)  # a DIFFERENT digit
        target = torch.where(flip, self.digit_ids[(values.clamp(min=0) + shift) % 10], target)
        ids = torch.cat([self.prompt_ids[idx], target], dim=1)
        mask = torch.cat([self.prompt_mask[idx], self.target_mask[idx]], dim=1)
        return ids, mask, self.prompt_ids.shape[1]


class WorkedBatches:
    """Teacher-forcing batches of the ``"worked"`` format with slipped column sums (module docstring).

    Every problem's responses under every slip pattern (each column -1, 0 or +1: 3**width
    variants) are tokenised once; a draw picks a problem and a pattern, column by column.
    Same layout as :class:`AnswerBatches`.
    """

    def __init__(self, problems: list[dict[str, str]], tok: CharTokenizer, width: int) -> None:
        self.width = width
        self.prompt_ids, self.prompt_mask = left_pad([tok.encode_prompt(p["question"]) for p in problems], tok.pad_id)
        patterns = [tuple((v // 3**i) % 3 - 1 for i in range(width)) for v in range(3**width)]
        targets = []
        for p in problems:
            a, b = (int(x) for x in p["question"][:-1].split("+"))
            targets.append([[*tok.encode(_slipped(a, b, width, slips)), tok.eos_id] for slips in patterns])
        longest = max(len(t) for variants in targets for t in variants)
        self.target_ids = torch.full((len(problems), len(patterns), longest), tok.pad_id, dtype=torch.long)
        self.target_mask = torch.zeros((len(problems), len(patterns), longest), dtype=torch.bool)
        for i, variants in enumerate(targets):
            for j, t in enumerate(variants):
                self.target_ids[i, j, : len(t)] = torch.tensor(t)
                self.target_mask[i, j, : len(t)] = True

    def draw(
        self, batch_size: int, corrupt_frac: float, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        idx = torch.randint(len(self.prompt_ids), (batch_size,), generator=gen)
        u = torch.rand((batch_size, self.width), generator=gen)
        slip = torch.where(u < corrupt_frac / 2, -1, torch.where(u < corrupt_frac, 1, 0))
        variant = ((slip + 1) * 3 ** torch.arange(self.width)).sum(-1)
        ids = torch.cat([self.prompt_ids[idx], self.target_ids[idx, variant]], dim=1)
        mask = torch.cat([self.prompt_mask[idx], self.target_mask[idx, variant]], dim=1)
        return ids, mask, self.prompt_ids.shape[1]


def _slipped(a: int, b: int, width: int, slips: tuple[int, ...]) -> str:
    """``worked_solution`` with the slips; a -1 slip that would make a column sum negative goes +1."""
    slips = list(slips)
    for i in range(width):
        try:
            worked_solution(a, b, width, tuple(slips[: i + 1]))
        except ValueError:
            slips[i] = 1
    return worked_solution(a, b, width, tuple(slips))
