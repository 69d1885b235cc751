"""One-layer modular-addition transformers with an *attention rate* (Zhong et al. 2023,
zhong2023clock), trained with a lean plain-torch forward and analysed on a TransformerBridge.

The authors' model (their released ``code/train-main.py``) mixes each head's softmax
attention with constant attention: ``A = rate * softmax(QK^T / sqrt(d_head)) + (1 - rate)``,
so rate 1 is a standard transformer and rate 0 gives every key weight 1 whatever the query.
Inputs are the two operands ``[a, b]`` only (no ``=`` token) and the answer is read at the
last position; one layer, four heads, ``d_model`` 128, a ReLU MLP of width 512 with biases,
no LayerNorm, no attention biases. Only the last position's output matters, so causal or
bidirectional attention give the same answer (the last query sees both keys).

Parameters use the TL-native names of :mod:`mikb.lm.lean_native`, so
:func:`mikb.lm.lean_native.to_bridge` copies them into a ``TransformerBridge``;
:func:`rate_hook` applies the same attention rate to the bridge's ``hook_pattern``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mikb.lm.lean_native import LeanConfig, Params


def model_config(p: int, d_model: int = 128, n_heads: int = 4) -> LeanConfig:
    """The authors' one-layer ReLU transformer for modulus ``p`` (inputs ``a, b``)."""
    return LeanConfig(n_layers=1, n_heads=n_heads, d_model=d_model, d_head=d_model // n_heads,
                      d_mlp=4 * d_model, d_vocab=p, d_vocab_out=p, n_ctx=2, attn_only=False,
                      act_fn="relu", use_bias=True)


def trainable_names(params: Params) -> list[str]:
    """Every weight plus the MLP biases; the attention biases stay at zero (the authors'
    attention has none)."""
    return [n for n in params if not (n.endswith(".bias") and ".attn." in n)]


def last_logits(cfg: LeanConfig, params: Params, tokens: torch.Tensor, rate: float,
                embed: torch.Tensor | None = None) -> torch.Tensor:
    """Logits at the last position, ``[batch, p]``.

    ``embed`` (``[batch, 2, d_model]``), when given, replaces the token embeddings (the
    gradient-symmetricity measure differentiates with respect to them).
    """
    pre = "layers.0."
    e = params["tok_embed.weight"][tokens] if embed is None else embed
    x = e + params["pos.weight"][: tokens.shape[1]]
    batch, seq, _ = x.shape
    nh, dh = cfg.n_heads, cfg.d_head
    q = F.linear(x[:, -1:], params[pre + "attn.q.weight"], params[pre + "attn.q.bias"])
    k = F.linear(x, params[pre + "attn.k.weight"], params[pre + "attn.k.bias"])
    v = F.linear(x, params[pre + "attn.v.weight"], params[pre + "attn.v.bias"])
    q = q.view(batch, 1, nh, dh).transpose(1, 2)
    k = k.view(batch, seq, nh, dh).transpose(1, 2)
    v = v.view(batch, seq, nh, dh).transpose(1, 2)
    attn = (q @ k.transpose(-2, -1) / math.sqrt(dh)).softmax(-1) * rate + (1.0 - rate)
    z = (attn @ v).transpose(1, 2).reshape(batch, 1, nh * dh)
    x = x[:, -1:] + F.linear(z, params[pre + "attn.o.weight"], params[pre + "attn.o.bias"])
    h = F.relu(F.linear(x, params[pre + "mlp.fc_in.weight"], params[pre + "mlp.fc_in.bias"]))
    x = x + F.linear(h, params[pre + "mlp.fc_out.weight"], params[pre + "mlp.fc_out.bias"])
    return (x @ params["head.weight"].T)[:, 0]


def rate_hook(rate: float):
    """A ``hook_pattern`` hook that turns the bridge's causal softmax pattern into the
    attention-rate mix, adding the constant part on the visible (causal) keys only."""

    def hook(pattern: torch.Tensor, hook) -> torch.Tensor:  # noqa: ANN001 - TransformerLens hook signature
        seq = pattern.shape[-1]
        visible = torch.tril(torch.ones(seq, seq, dtype=pattern.dtype, device=pattern.device))
        return pattern * rate + (1.0 - rate) * visible

    return hook


def modular_pairs(p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``p*p`` inputs ``[a, b]`` in row-major order and their labels ``(a + b) mod p``."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return torch.stack([a, b], 1), (a + b) % p


def gradient_symmetricity(logit_fn, embed: torch.Tensor, triples: torch.Tensor) -> float:
    """Mean cosine similarity between the gradients of the output logit ``c`` with respect to
    the embeddings of ``a`` and of ``b``, over ``triples`` ``[n, 3]`` of ``(a, b, c)``
    (``c`` need not be the answer), as the authors' ``gradient_symmetricity`` computes it.

    ``logit_fn(tokens, embeds)`` returns last-position logits given input embeddings
    ``[n, 2, d]``. A model whose output depends on ``E_a + E_b`` only (the Pizza's uniform
    attention) scores near 1; the Clock's multiplicative use of the two inputs scores lower.
    """
    tokens = triples[:, :2]
    e = embed[tokens].detach().clone().requires_grad_(True)
    logits = logit_fn(tokens, e)
    picked = logits[torch.arange(len(triples)), triples[:, 2]].sum()
    (grad,) = torch.autograd.grad(picked, e)
    return float(F.cosine_similarity(grad[:, 0].double(), grad[:, 1].double(), dim=-1).mean())


def correct_logit_grid(logits: torch.Tensor, p: int) -> torch.Tensor:
    """Correct-answer logit arranged as ``L[(a + b) mod p, (a - b) mod p]`` from logits over all
    pairs in row-major ``(a, b)`` order."""
    inputs, labels = modular_pairs(p)
    grid = torch.zeros(p, p, dtype=torch.float64)
    a, b = inputs[:, 0], inputs[:, 1]
    grid[(a + b) % p, (a - b) % p] = logits[torch.arange(p * p), labels].double()
    return grid


def distance_irrelevance(grid: torch.Tensor) -> float:
    """Mean over distances ``d = a - b`` of the spread of the correct logit across sums, over
    its overall spread (the authors' ``np.mean(np.std(oo, axis=0)) / np.std(oo)``).

    Near 0: the correct logit is set by the distance between the operands (Pizza); near 1:
    the distance is irrelevant (Clock)."""
    return float(grid.std(dim=0, unbiased=False).mean() / grid.flatten().std(unbiased=False))
