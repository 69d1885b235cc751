"""The paper protocols added to the IOI family: adversarial prompts (wang2022ioi Sec. 4.4), the
six signal datasets (Appendix A) and CSPA's halves (mcdougall2023copysuppression Sec. 3.3.1)."""

import torch

from mikb.data.gpt2_bpe import get_tokenizer
from mikb.data.ioi import make_ioi_dataset
from mikb.methods.ioi_adversarial import adversarial_tokens
from mikb.methods.ioi_signals import signal_source_tokens


def test_adversarial_prompts_repeat_io_before_s2():
    tok = get_tokenizer()
    ds = make_ioi_dataset(12, seed=3)
    seqs, used = adversarial_tokens(ds, n_sentences=2, seed=0)
    assert used == 2
    punct = {tok.encode(".")[0], tok.encode(",")[0]}
    for i, adv in enumerate(seqs):
        clean = ds.tokens[i].tolist()
        io, s = int(ds.io_ids[i]), int(ds.s_ids[i])
        assert adv.count(io) == 3 and adv.count(s) == 2  # IO once more per sentence
        extra = len(adv) - len(clean)
        s2 = int(ds.pos["S2"][i])
        cut = max(j for j in range(s2) if clean[j] in punct) + 1  # after the clause's "." or ","
        assert adv[:cut] == clean[:cut] and adv[cut + extra:] == clean[cut:]
        inserted = adv[cut:cut + extra]
        assert inserted[0] == io and inserted[-1] == tok.encode(".")[0]
    # A short context gets fewer sentences, never a truncated prompt.
    _, used_short = adversarial_tokens(ds, n_sentences=2, seed=0, max_len=ds.tokens.shape[1] + 7)
    assert used_short == 1


def test_signal_datasets_set_token_and_position_signals():
    ds = make_ioi_dataset(10, seed=1)
    src = signal_source_tokens(ds, seed=0)
    b = torch.arange(len(ds))
    io_p, s1_p, s2_p = ds.pos["IO"], ds.pos["S1"], ds.pos["S2"]
    a, s = ds.io_ids, ds.s_ids
    at = {k: (t[b, io_p], t[b, s1_p], t[b, s2_p]) for k, t in src.items()}
    assert all(torch.equal(x, y) for x, y in zip(at[(1, 1)], (a, s, s), strict=True))
    assert all(torch.equal(x, y) for x, y in zip(at[(1, -1)], (s, a, s), strict=True))
    assert all(torch.equal(x, y) for x, y in zip(at[(-1, -1)], (a, s, a), strict=True))
    assert all(torch.equal(x, y) for x, y in zip(at[(-1, 1)], (s, a, a), strict=True))
    io0, s10, s20 = at[(0, 1)]
    assert torch.equal(s10, s20) and not (io0 == s10).any()
    assert not ((io0 == a) | (io0 == s) | (s10 == a) | (s10 == s)).any()  # fresh names
    io1, s11, s21 = at[(0, -1)]
    assert torch.equal(io1, s10) and torch.equal(s11, io0) and torch.equal(s21, s10)
    for t in src.values():  # only the three name positions change
        other = torch.ones_like(t, dtype=torch.bool)
        other[b, io_p] = other[b, s1_p] = other[b, s2_p] = False
        assert torch.equal(t[other], ds.tokens[other])


def test_cspa_halves_on_the_planted_model():
    from mikb.lm.planted_ioi import build_planted_ioi, planted_names
    from mikb.methods.ablation import head_means
    from mikb.methods.copy_suppression import cspa_paper

    built = build_planted_ioi()
    model = built[0] if isinstance(built, tuple) else built
    ds = make_ioi_dataset(8, seed=0, names=planted_names())
    means = head_means(model, make_ioi_dataset(8, seed=1, names=planted_names()).corrupted_tokens)
    res = cspa_paper(model, ds.tokens, means, 4, 5)  # a planted copy-suppression head
    assert res["kl_mean_ablation"] > 0
    for key in ("cspa", "ov", "qk"):
        assert 0.9 < res[f"{key}_fraction_explained"] < 1.1
    # Keeping every source's whole write is no ablation at all.
    full = cspa_paper(model, ds.tokens, means, 4, 5, k_frac=1.0)
    assert abs(full["kl_qk"]) < 1e-3 * full["kl_mean_ablation"] + 1e-7
    # Per-position summaries: the top percentile and the loss versions of the ratio.
    from mikb.methods.copy_suppression import cspa_token_summary

    tok = cspa_paper(model, ds.tokens, means, 4, 5, per_token=True)["per_token"]
    assert tok["kl_mean"].shape == ds.tokens.shape
    assert tok["loss_cspa"].shape == (len(ds), ds.tokens.shape[1] - 1)
    summ = cspa_token_summary(tok)
    assert summ["top_percentile_positions"] == 2  # ceil(1% of 8 x 16 positions)
    assert 0.9 < summ["top_percentile_fraction_explained"] < 1.1
