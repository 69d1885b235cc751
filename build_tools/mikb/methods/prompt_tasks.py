"""Component discovery on clean/corrupted prompt pairs, for any TransformerBridge.

Why a task-generic layer next to the IOI helpers: the zoo's pretrained circuits (greater-than,
docstring, acronyms, ...) each have their own prompts and metric, and run on architectures the
fast patching path does not cover (GPT-NeoX, TL-native attention-only). Everything here is
hook-based and built on the same pieces the IOI scripts use: TransformerLens's denoising
activation patching of head outputs (as ``methods.activation_patching``), ``hooks.head_write``
for direct effects through the frozen final-norm scale (as ``methods.dla``), and mean
ablation from ``methods.ablation``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens import patching

from mikb.methods.ablation import head_means, run_ablated
from mikb.methods.hooks import Head, all_heads, head_label, head_write, z_name

FLAGS = {
    "patching_direction": "denoising: clean activation patched into the corrupted run",
    "patching_metric": "normalised task metric (0 = corrupted run, 1 = clean run)",
    "dla": "direct effect at the readout position through the clean final-norm scale",
}

Metric = Callable[[torch.Tensor], torch.Tensor]  # logits [batch, pos, vocab] -> [batch]


@dataclass
class PromptPairs:
    """Equal-length clean and corrupted prompts, read out at ``pos`` (same for all prompts)."""

    clean: torch.Tensor  # [batch, pos]
    corrupted: torch.Tensor
    metric: Metric  # per-prompt task metric of the logits
    pos: int = -1

    def __post_init__(self) -> None:
        if self.clean.shape != self.corrupted.shape:
            raise ValueError(f"clean {tuple(self.clean.shape)} and corrupted "
                             f"{tuple(self.corrupted.shape)} prompts differ in shape")


def logit_diff_metric(correct: torch.Tensor, wrong: torch.Tensor, pos: int = -1) -> Metric:
    """logit(correct) - logit(wrong) at ``pos``, per prompt (ids are [batch])."""
    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, pos]
        b = torch.arange(last.shape[0])
        return last[b, correct] - last[b, wrong]
    return metric


def clean_and_corrupted(model: Any, pairs: PromptPairs) -> tuple[float, float, Any, Any]:
    """Mean metric on both runs and both caches."""
    with torch.no_grad():
        lc, cc = model.run_with_cache(pairs.clean)
        lx, cx = model.run_with_cache(pairs.corrupted)
    return pairs.metric(lc).mean().item(), pairs.metric(lx).mean().item(), cc, cx


def _normalised(pairs: PromptPairs, clean: float, corrupted: float) -> Metric:
    span = clean - corrupted
    if abs(span) < 1e-9:
        span = 1e-9  # a stand-in with no task signal: scores are then meaningless but finite
    return lambda logits: (pairs.metric(logits).mean() - corrupted) / span


# One patched run = (hook name, patch function(activation chunk, clean activation) -> chunk).
Patch = tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


def batched_patching(model: Any, pairs: PromptPairs, clean_cache: Any, patches: Sequence[Patch],
                     max_rows: int = 64) -> torch.Tensor:
    """Mean task metric of each patched run, [len(patches)].

    Why batched: a bridge forward costs the same for 8 rows as for 64 on small models (hook
    dispatch dominates), so several patched runs share one forward, each on its own copy of the
    corrupted batch; a patch only touches its own rows.
    """
    b = pairs.corrupted.shape[0]
    per = max(1, max_rows // b)
    out = torch.zeros(len(patches))
    for first in range(0, len(patches), per):
        group = list(enumerate(patches))[first:first + per]
        by_name: dict[str, list[tuple[int, Callable]]] = {}
        for slot, (_i, (name, fn)) in enumerate(group):
            by_name.setdefault(name, []).append((slot, fn))

        def make(name: str, items: list[tuple[int, Callable]]):
            clean_act = clean_cache[name]

            def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
                act = act.clone()
                for slot, fn in items:
                    rows = slice(slot * b, (slot + 1) * b)
                    act[rows] = fn(act[rows], clean_act)
                return act
            return hook

        tokens = pairs.corrupted.repeat(len(group), 1)
        with torch.no_grad():
            logits = model.run_with_hooks(
                tokens, fwd_hooks=[(n, make(n, items)) for n, items in by_name.items()])
        for slot, (i, _) in enumerate(group):
            out[i] = pairs.metric(logits[slot * b:(slot + 1) * b]).mean()
    return out


def _norm(values: torch.Tensor, clean: float, corrupted: float) -> torch.Tensor:
    span = clean - corrupted
    return (values - corrupted) / (span if abs(span) > 1e-9 else 1e-9)


def patch_heads(model: Any, pairs: PromptPairs, clean: float, corrupted: float,
                clean_cache: Any, max_rows: int = 64) -> torch.Tensor:
    """[n_layers, n_heads]: recovery when one head's clean output (all positions) is patched.

    The same quantity as TransformerLens's ``get_act_patch_attn_head_out_all_pos`` with the
    normalised metric (``tests/test_pretrained_zoo.py`` holds them equal).
    """
    def head_patch(h: int):
        def fn(z: torch.Tensor, clean_z: torch.Tensor) -> torch.Tensor:
            z[:, :, h] = clean_z[:, :, h]
            return z
        return fn

    patches = [(z_name(la), head_patch(h)) for la, h in all_heads(model)]
    vals = batched_patching(model, pairs, clean_cache, patches, max_rows)
    return _norm(vals, clean, corrupted).view(model.cfg.n_layers, model.cfg.n_heads)


def patch_mlps(model: Any, pairs: PromptPairs, clean: float, corrupted: float,
               clean_cache: Any, max_rows: int = 64) -> torch.Tensor:
    """[n_layers]: recovery when one MLP's clean output (all positions) is patched."""
    patches = [(f"blocks.{la}.hook_mlp_out", lambda a, c: c.clone())
               for la in range(model.cfg.n_layers)]
    return _norm(batched_patching(model, pairs, clean_cache, patches, max_rows), clean, corrupted)


def tl_patch_heads(model: Any, pairs: PromptPairs, clean: float, corrupted: float,
                   clean_cache: Any) -> torch.Tensor:
    """TransformerLens's hook-per-head sweep (slow; the cross-check of :func:`patch_heads`)."""
    with torch.no_grad():
        return patching.get_act_patch_attn_head_out_all_pos(
            model, pairs.corrupted, clean_cache, _normalised(pairs, clean, corrupted)).detach()


def patch_resid_by_pos(model: Any, pairs: PromptPairs, clean: float, corrupted: float,
                       clean_cache: Any) -> torch.Tensor:
    """[n_layers, pos]: recovery when the residual stream before a block is patched at one position."""
    with torch.no_grad():
        return patching.get_act_patch_resid_pre(
            model, pairs.corrupted, clean_cache, _normalised(pairs, clean, corrupted)).detach()


def _final_scale(cache: Any, pos: int) -> torch.Tensor | float:
    name = "ln_final.hook_scale"
    return cache[name][:, pos] if name in cache else 1.0


@torch.no_grad()
def head_dla(model: Any, cache: Any, directions: torch.Tensor, pos: int = -1) -> torch.Tensor:
    """[n_layers, n_heads]: each head's direct effect on ``directions`` ([batch, d_model]) at
    ``pos``, mean over prompts."""
    scale = _final_scale(cache, pos)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for la, h in all_heads(model):
        write = head_write(model, cache, la, h)[:, pos] / scale
        out[la, h] = (write * directions).sum(-1).mean()
    return out


@torch.no_grad()
def mlp_dla(model: Any, cache: Any, directions: torch.Tensor, pos: int = -1) -> torch.Tensor:
    """[n_layers]: each MLP's direct effect on ``directions`` at ``pos``, mean over prompts."""
    scale = _final_scale(cache, pos)
    return torch.stack([
        ((cache[f"blocks.{la}.hook_mlp_out"][:, pos] / scale) * directions).sum(-1).mean()
        for la in range(model.cfg.n_layers)])


def unembed_directions(model: Any, correct: torch.Tensor, wrong: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """W_U[:, correct] (- W_U[:, wrong]) per prompt, [batch, d_model]."""
    w_u = model.W_U
    d = w_u[:, correct].T
    return d - w_u[:, wrong].T if wrong is not None else d


def attention_to(cache: Any, head: Head, query_pos: int, key_pos: torch.Tensor | int) -> float:
    """Mean attention of ``head`` from ``query_pos`` to ``key_pos`` (one per prompt or shared)."""
    pattern = cache[f"blocks.{head[0]}.attn.hook_pattern"][:, head[1], query_pos]  # [batch, key]
    b = torch.arange(pattern.shape[0])
    key = torch.as_tensor(key_pos).expand(pattern.shape[0]) if not torch.is_tensor(key_pos) \
        else key_pos
    return pattern[b, key].mean().item()


def ablate_heads_effect(model: Any, pairs: PromptPairs, reference: torch.Tensor,
                        heads: Sequence[Head]) -> tuple[float, float]:
    """(metric with ``heads`` mean-ablated over ``reference`` prompts, metric unablated)."""
    means = head_means(model, reference)
    ablated = pairs.metric(run_ablated(model, pairs.clean, means, heads)).mean().item()
    with torch.no_grad():
        base = pairs.metric(model(pairs.clean)).mean().item()
    return ablated, base


def top_heads(scores: torch.Tensor, k: int, threshold: float = 0.0, sign: int = 1) -> list[str]:
    """Up to ``k`` heads with the largest ``sign * score`` above ``threshold``, as 'L.H'."""
    s = torch.nan_to_num(scores * sign, nan=0.0)
    order = sorted(((s[la, h].item(), la, h) for la in range(s.shape[0])
                    for h in range(s.shape[1])), reverse=True)
    return [head_label((la, h)) for v, la, h in order[:k] if v > threshold]


def top_layers(scores: torch.Tensor, k: int, threshold: float = 0.0) -> list[str]:
    order = sorted(((scores[la].item(), la) for la in range(scores.shape[0])), reverse=True)
    return [str(la) for v, la in order[:k] if v > threshold]


def scores_at(scores: torch.Tensor, heads: Sequence[Head]) -> dict[str, float]:
    return {head_label(v): float(scores[v]) for v in heads
            if v[0] < scores.shape[0] and v[1] < scores.shape[1]}


def stack_prompts(rows: list[list[int]]) -> torch.Tensor:
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise ValueError(f"prompts must tokenise to one length, got lengths {sorted(lengths)}")
    return torch.tensor(rows, dtype=torch.long)


def heads_in(model: Any, labels: Sequence[str]) -> list[str]:
    """The labels among ``labels`` that name a head this model has (stand-ins may be smaller)."""
    out = []
    for label in labels:
        la, h = (int(x) for x in label.split("."))
        if la < model.cfg.n_layers and h < model.cfg.n_heads:
            out.append(label)
    return out
