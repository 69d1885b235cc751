"""Every tensor the fast methods create lands on the model's device, not the default one.

No GPU is lent to this project's CI, so CUDA is simulated the other way round: the model
stays on the CPU and torch's default device is set to ``meta`` while a method runs. A tensor
made without ``device=`` (a causal mask, a position index, a zero-filled result, a rotary
table) is then a meta tensor, and the first operation mixing it with the model's activations
raises, exactly where the same code on a CUDA model would mix a CPU tensor into CUDA ones.
Inputs (tokens, readouts, edge tasks) are built before the switch, as a user builds them.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from test_fast_patching_families import _bridge, _prompts

from mikb.methods._fast_forward import kl_readout, loss_readout
from mikb.methods.attribution import attribution_patching
from mikb.methods.fast_patching import (
    extract_weights,
    head_out_patching,
    path_patching_from_head,
    unpatched_metric,
)
from mikb.methods.guided_patching import guided_head_patching

warnings.filterwarnings("ignore")


@contextlib.contextmanager
def default_device_meta():
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device("cpu")


def _assert_on_cpu(out) -> None:
    tensors = [out] if isinstance(out, torch.Tensor) else [v for v in vars(out).values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)


@pytest.fixture(scope="module", params=["llama", "neox", "gptj", "gemma2"])
def family(request):
    model = _bridge(request.param)
    return request.param, model, extract_weights(model)


def _patching_calls(w, clean, corrupt, readout):
    with torch.no_grad():
        ref_logits = torch.randn(clean.shape[0], 2, w.w_u.shape[1])
    several = torch.tensor([[5, 8]] * clean.shape[0])
    return {
        "unpatched": lambda: unpatched_metric(w, clean, readout),
        "head": lambda: head_out_patching(w, clean, corrupt, readout),
        "head, small chunks": lambda: head_out_patching(w, clean, corrupt, readout, max_rows=8),
        "head, KL at two positions": lambda: head_out_patching(w, clean, corrupt, kl_readout(ref_logits, several)),
        "head, loss": lambda: head_out_patching(w, clean, corrupt, loss_readout(corrupt)),
        "path q": lambda: path_patching_from_head(w, clean, corrupt, readout, (0, 1), "q"),
        "path v": lambda: path_patching_from_head(w, clean, corrupt, readout, (0, 1), "v"),
        "guided top 4": lambda: guided_head_patching(w, clean, corrupt, readout, 4).exact,
    }


def test_patching_methods_make_nothing_on_the_default_device(family):
    _, _, w = family
    clean, corrupt, readout = _prompts(2)
    for name, call in _patching_calls(w, clean, corrupt, readout).items():
        with default_device_meta(), torch.no_grad():
            out = call()
        assert out.device.type == "cpu", name


def test_attribution_makes_nothing_on_the_default_device(family):
    _, _, w = family
    clean, corrupt, readout = _prompts(2)
    edges = all(lw.attn_post is None for lw in w.layers)  # Gemma 2's edges are refused
    with default_device_meta():
        out = attribution_patching(w, clean, corrupt, readout, edges=edges, examples_per_pass=2)
    _assert_on_cpu(out)


def test_discovery_makes_nothing_on_the_default_device(family):
    from mikb.methods.acdc import acdc
    from mikb.methods.eap import eap, eap_ig
    from mikb.methods.edge_patching import edge_patching
    from mikb.methods.edge_task import EdgeTask
    from mikb.methods.graph import GraphForward

    _, model, _ = family
    clean, corrupt, _ = _prompts(0)
    task = EdgeTask(GraphForward(model), clean, corrupt, slice(-1, None), "categorical", "resample")
    methods = [lambda: edge_patching(task), lambda: acdc(task, threshold=0.05)]
    if not task.forward.post_norm:  # EAP refuses Gemma 2's post-attention norm
        methods += [lambda: eap(task), lambda: eap_ig(task, steps=2)]
    with default_device_meta():
        for method in methods:
            _assert_on_cpu(method())
