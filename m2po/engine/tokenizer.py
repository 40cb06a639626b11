"""A fixed character vocabulary for the tiny arithmetic task.

Why characters: the task's strings are short ("37+48=" -> "85"), so one token per character keeps
the vocabulary at ~20 ids, needs no training and makes every token boundary obvious when
reading rollouts. The vocabulary is a constant so checkpoints, datasets and runs agree on ids.

Layout: ``pad_id = 0``, ``bos_id = 1``, ``eos_id = 2``, then one id per character of
``DEFAULT_CHARS`` in order.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Digits, the operators the task may use, '=', space and '?'. Changing this changes every id:
#: do it only together with regenerating warm starts (the SFT cache key includes vocab_size).
DEFAULT_CHARS = "0123456789+-*= ?"


class CharTokenizer:
    """Character tokenizer with pad/bos/eos specials.

    ``encode`` never adds specials (callers decide: prompts get ``bos`` in front via
    ``encode_prompt``, SFT targets get ``eos`` at the end); ``decode`` stops at the first ``eos``
    and drops ``pad``/``bos`` so it can be applied to a raw response block.
    """

    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    _N_SPECIAL = 3

    def __init__(self, chars: str = DEFAULT_CHARS) -> None:
        if len(set(chars)) != len(chars):
            raise ValueError(f"duplicate characters in vocabulary {chars!r}")
        self.chars = chars
        self._to_id = {c: i + self._N_SPECIAL for i, c in enumerate(chars)}
        self._to_char = {i: c for c, i in self._to_id.items()}

    @property
    def vocab_size(self) -> int:
        return self._N_SPECIAL + len(self.chars)

    def encode(self, text: str) -> list[int]:
        """One id per character; an unknown character raises ValueError naming it."""
        ids = []
        for pos, c in enumerate(text):
            try:
                ids.append(self._to_id[c])
            except KeyError:
                raise ValueError(
                    f"character {c!r} at position {pos} of {text!r} is not in the vocabulary {self.chars!r}"
                ) from None
        return ids

    def encode_prompt(self, text: str) -> list[int]:
        """``[bos] + encode(text)``: the form every prompt is fed to the model in."""
        return [self.bos_id, *self.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Characters up to (not including) the first eos; pad and bos are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            try:
                out.append(self._to_char[i])
            except KeyError:
                raise ValueError(f"token id {i} is outside the vocabulary (size {self.vocab_size})") from None
        return "".join(out)
