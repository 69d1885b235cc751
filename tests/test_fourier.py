"""The key-frequency rule of the grokking analysis, on embeddings whose spectrum is known."""

from __future__ import annotations

import math

import torch

from mikb.methods.fourier import frequency_norms, key_frequencies

P = 113


def _embedding(amplitudes: dict[int, float], d_model: int = 128, seed: int = 0) -> torch.Tensor:
    """A ``[p, d_model]`` embedding that is a sum of waves: frequency ``k`` written along its
    own random direction with the given amplitude (cos and sin parts, random phase)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(P, dtype=torch.float64)
    w_e = torch.zeros(P, d_model, dtype=torch.float64)
    for k, amp in amplitudes.items():
        phase = float(torch.rand(1, generator=gen)) * 2 * math.pi
        direction = torch.randn(d_model, generator=gen, dtype=torch.float64)
        wave = torch.cos(2 * math.pi * k * x / P + phase)
        w_e += amp * wave[:, None] * (direction / direction.norm())[None, :]
    return w_e


def test_norms_locate_the_planted_frequencies() -> None:
    norms = frequency_norms(_embedding({5: 1.0, 31: 0.8}))
    assert sorted((torch.argsort(norms, descending=True)[:2] + 1).tolist()) == [5, 31]
    assert norms[[4, 30]].sum() / norms.sum() > 0.999


def test_comparable_keys_over_a_decaying_tail() -> None:
    # Five keys within 1.6x of each other; a geometric tail whose log-spacing deep down has
    # the largest jump (as in a run stopped soon after cleanup): the keys are still the five.
    keys = {22: 1.0, 7: 0.95, 23: 0.9, 19: 0.85, 9: 0.8}
    tail = {53: 0.5, 38: 0.38, 44: 0.3, 46: 0.25, 18: 0.2, 14: 0.19, 16: 0.02, 21: 0.015}
    assert key_frequencies(frequency_norms(_embedding(keys | tail))) == sorted(keys)


def test_a_clean_spectrum_keeps_every_key() -> None:
    keys = {3: 1.0, 10: 0.6, 17: 0.9, 41: 0.7}
    noise = {k: 0.01 for k in (2, 8, 30, 50)}
    assert key_frequencies(frequency_norms(_embedding(keys | noise))) == [3, 10, 17, 41]


def test_a_single_dominant_frequency() -> None:
    assert key_frequencies(frequency_norms(_embedding({12: 1.0, 40: 0.05, 41: 0.04}))) == [12]
