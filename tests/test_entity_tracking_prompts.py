"""Entity-tracking prompts under a SentencePiece-style tokenizer (LLaMA's behaviour).

Why: LLaMA's tokenizer prepends "\u2581" to the text and turns spaces into "\u2581", so " apple"
encoded on its own is two pieces ("\u2581" and "\u2581apple") while in running text it is one.
Prompts built segment by segment from such encodings would get spurious tokens or refuse every
word; the script must locate each word's token in the whole prompt instead. LLaMA's own
tokenizer does not ship offline, so a tiny word-level tokenizer with the same normalisation
stands in for it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mikb.lm.pretrained import Tok, gpt2_bpe_tokenizer

SCRIPT = Path(__file__).resolve().parents[1] / "circuits_zoo" / "entity-tracking" / "reproduce.py"
SP = "\u2581"


def _script():
    spec = importlib.util.spec_from_file_location("entity_tracking_reproduce", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sentencepiece_like(words):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, SP: 3, "##,": 4, "##.": 5}
    for w in sorted(words):
        vocab.setdefault(SP + w, len(vocab))
    t = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", continuing_subword_prefix="##"))
    t.normalizer = normalizers.Sequence([normalizers.Prepend(SP), normalizers.Replace(" ", SP)])
    t.pre_tokenizer = pre_tokenizers.Split(Regex(SP), behavior="merged_with_next")
    t.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


@pytest.fixture(scope="module")
def et():
    return _script()


def _check(et, tok, n=6, n_boxes=4):
    clean, bad, ans, others, obj_pos, label_pos = et.make_prompts(tok, n, n_boxes, seed=0)
    assert clean.shape == bad.shape and clean.shape[0] == n
    for i in range(n):
        row = clean[i].tolist()
        assert row[0] == tok.bos_id
        assert row[obj_pos[i]] == ans[i]  # the queried object's in-context token is the answer
        assert ans[i].item() not in others[i].tolist()
        assert row[label_pos] != bad[i, label_pos]  # only the query label differs
        assert (clean[i] != bad[i]).sum() == 1
        assert tok.decode(row).replace(SP, " ").strip().endswith("contains the")


def test_prompts_under_sentencepiece_style_tokenizer(et):
    words = set(et.OBJECTS) | set(et.LABELS) | set("The the is in Box contains".split())
    hf = _sentencepiece_like(words)
    assert hf.convert_ids_to_tokens(hf.encode(" apple", add_special_tokens=False)) == [SP, SP + "apple"]
    _check(et, Tok(hf))


def test_prompts_under_gpt2_bpe(et):
    _check(et, Tok(gpt2_bpe_tokenizer()))


def test_refuses_clearly_when_words_split(et):
    hf = _sentencepiece_like(set("The the is in Box contains".split()) | set(et.LABELS))
    with pytest.raises(RuntimeError, match="single tokens in context"):
        et.make_prompts(Tok(hf), 4, 4, seed=0)
