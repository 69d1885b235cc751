"""IOI prompts: positions, ABC corruption and determinism."""

import torch

from mikb.data.gpt2_bpe import get_tokenizer
from mikb.data.ioi import ABBA_TEMPLATES, BABA_TEMPLATES, make_ioi_dataset, template_lengths


def test_positions_point_at_the_names():
    ds = make_ioi_dataset(40, seed=3)
    tok = get_tokenizer()
    b = torch.arange(len(ds))
    assert (ds.tokens[b, ds.pos["IO"]] == ds.io_ids).all()
    assert (ds.tokens[b, ds.pos["S1"]] == ds.s_ids).all()
    assert (ds.tokens[b, ds.pos["S2"]] == ds.s_ids).all()
    assert (ds.pos["S1"] < ds.pos["S2"]).all()
    assert (ds.tokens[:, 0] == tok.bos_token_id).all()
    assert (ds.end == ds.tokens.shape[1] - 1).all()
    for i, order in enumerate(ds.orders):
        io_first = bool(ds.pos["IO"][i] < ds.pos["S1"][i])
        assert io_first == (order == "ABBA")
    assert {"ABBA", "BABA"} == set(ds.orders)


def test_abc_corruption_has_three_fresh_names_and_same_shape():
    ds = make_ioi_dataset(30, seed=1)
    assert ds.corrupted_tokens.shape == ds.tokens.shape
    b = torch.arange(len(ds))
    for key in ("IO", "S1", "S2"):
        assert (ds.corrupted_tokens[b, ds.pos[key]] != ds.tokens[b, ds.pos[key]]).all()
    names = torch.stack([ds.corrupted_tokens[b, ds.pos[k]] for k in ("IO", "S1", "S2")], 1)
    assert all(len(set(row.tolist())) == 3 for row in names)
    same = ds.corrupted_tokens == ds.tokens
    for key in ("IO", "S1", "S2"):
        same[b, ds.pos[key]] = True
    assert same.all()  # only the three names differ


def test_deterministic_and_restricted_names():
    a = make_ioi_dataset(10, seed=5, names=["Mary", "John", "Anna", "Paul", "Kate", "Sarah"])
    b = make_ioi_dataset(10, seed=5, names=["Mary", "John", "Anna", "Paul", "Kate", "Sarah"])
    assert a.prompts == b.prompts and a.corrupted_prompts == b.corrupted_prompts
    assert all(any(n in p for n in ("Mary", "John", "Anna", "Paul", "Kate", "Sarah")) for p in a.prompts)
    assert make_ioi_dataset(10, seed=6).prompts != a.prompts


def test_templates_abba_mirror_baba():
    assert len(ABBA_TEMPLATES) == len(BABA_TEMPLATES) == len(template_lengths()) == 15
    for abba, baba in zip(ABBA_TEMPLATES, BABA_TEMPLATES, strict=True):
        assert abba.index("[A]") < abba.index("[B]") and baba.index("[B]") < baba.index("[A]")
