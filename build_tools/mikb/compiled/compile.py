"""Compile a RASP program with tracr and write its weights, vocabularies and ground truth.

Needs the optional extra (``pip install -e '.[tracr]'``: tracr-pypi, which brings jax and
haiku). Run ``python -m mikb.compiled.compile`` to rewrite every committed file under
``compiled/weights/``; the tests compare a fresh compile with them where tracr is installed.

The steps are tracr's own ``compile_rasp_to_model`` pipeline, called one by one, because the
ground truth lives in the intermediate *craft* model: each craft block is one attention
layer's heads or one MLP, and each knows the residual subspaces (named basis directions such
as ``reverse_1:a``) it reads and writes. Placing blocks into layers follows tracr's
assembler (next free attention or MLP half-layer, in order). A graph edge ``W -> R<c>`` is in
the ground truth when a direction ``W`` writes is one ``R`` reads on input ``c``: that is the
data flow of the program's computation graph, read off the program rather than the weights.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mikb.compiled.programs import COMPILER_BOS, MLP_EXACTNESS, PROGRAMS, Program
from mikb.methods.graph import Graph

WEIGHTS_DIR = Path(__file__).parent / "weights"
N_SAMPLES = 8


def _labels(space: Any) -> list[str]:
    return [str(d) for d in space.basis]


program_sop: list[Any] = [None]  # the SOp of the last compile (labels are global counters)


def _craft_and_model(program: Program) -> tuple[Any, Any, Any]:
    from tracr.compiler import (
        basis_inference,
        craft_graph_to_model,
        craft_model_to_transformer,
        expr_to_craft_graph,
        rasp_to_graph,
    )
    from tracr.craft import bases
    from tracr.rasp import rasp

    sop = program.build()
    program_sop[0] = sop
    extracted = rasp_to_graph.extract_rasp_graph(sop)
    graph, sources, sink = extracted.graph, extracted.sources, extracted.sink
    basis_inference.infer_bases(graph, sink, set(program.vocab), program.max_seq_len)
    expr_to_craft_graph.add_craft_components_to_rasp_graph(
        graph, bos_dir=bases.BasisDirection(rasp.tokens.label, COMPILER_BOS),
        mlp_exactness=MLP_EXACTNESS)
    craft = craft_graph_to_model.craft_graph_to_model(graph, sources)
    model = craft_model_to_transformer.craft_model_to_transformer(
        craft_model=craft, graph=graph, sink=sink, max_seq_len=program.max_seq_len,
        compiler_bos=COMPILER_BOS, compiler_pad="PAD", causal=False)
    return craft, model, graph


def _placement(craft: Any) -> list[tuple[int, str]]:
    """(layer, 'attn' | 'mlp') of each craft block, as tracr's assembler places them."""
    from tracr.craft import transformers

    slots = iter([(layer, kind) for layer in range(len(craft.blocks)) for kind in ("attn", "mlp")])
    out = []
    for block in craft.blocks:
        kind = "mlp" if isinstance(block, transformers.MLP) else "attn"
        slot = next(slots)
        while slot[1] != kind:
            slot = next(slots)
        out.append(slot)
    return out


def _operation(graph: Any, labels: list[str]) -> dict[str, str]:
    """The RASP expression that produced a set of written directions."""
    names = sorted({lab.split(":")[0] for lab in labels})
    ops = []
    for name in names:
        base, part = name, ""
        if name.endswith("_selector_width_attn_output"):
            base, part = name[: -len("_selector_width_attn_output")], ", attention part"
        expr = graph.nodes[base]["EXPR"] if base in graph.nodes else None
        ops.append(f"{base} ({type(expr).__name__}{part})" if expr is not None else name)
    return {"sops": names, "text": ", ".join(ops)}


def ground_truth(craft: Any, model: Any, graph: Any) -> dict[str, Any]:
    """Components (what each head and MLP computes) and the edges that carry the program."""
    from tracr.craft import transformers

    residual = list(model.residual_labels)
    writes: dict[str, set[str]] = {
        "input": {r for r in residual if r.split(":")[0] in ("tokens", "indices", "one")}}
    reads: dict[tuple[str, str | None], set[str]] = {}
    components = []
    for block, (layer, _kind) in zip(craft.blocks, _placement(craft), strict=True):
        if isinstance(block, transformers.MLP):
            node = f"m{layer}"
            writes[node] = set(_labels(block.snd.output_space))
            reads[(node, None)] = set(_labels(block.fst.input_space))
            components.append({"node": node, "reads": sorted(reads[(node, None)]),
                               "writes": sorted(writes[node]),
                               "operation": _operation(graph, sorted(writes[node]))})
            continue
        for h, head in enumerate(block.as_multi().heads()):
            node = f"a{layer}.h{h}"
            writes[node] = set(_labels(head.w_ov.output_space))
            reads[(node, "q")] = set(_labels(head.w_qk.left_space))
            reads[(node, "k")] = set(_labels(head.w_qk.right_space))
            reads[(node, "v")] = set(_labels(head.w_ov.input_space))
            components.append({"node": node, "reads_q": sorted(reads[(node, "q")]),
                               "reads_k": sorted(reads[(node, "k")]),
                               "reads_v": sorted(reads[(node, "v")]),
                               "writes": sorted(writes[node]),
                               "operation": _operation(graph, sorted(writes[node]))})
    reads[("logits", None)] = set(_output_labels(model))
    edges = []
    for (reader, c), read in reads.items():
        for writer, wrote in writes.items():
            if Graph.slot(writer) < Graph.slot(reader) and wrote & read:  # the graph's own forward order
                edges.append(f"{writer}->{reader}" + (f"<{c}>" if c else ""))
    return {"components": components, "edges": sorted(edges)}


def _output_labels(model: Any) -> list[str]:
    unembed = _unembed(model)
    return [model.residual_labels[i] for i in np.nonzero(unembed.any(axis=1))[0]]


def _unembed(model: Any) -> np.ndarray:
    """[d_model, d_out]: categorical: one column per output value; numerical: one column."""
    residual = list(model.residual_labels)
    enc = getattr(model.output_encoder, "encoding_map", None)
    if enc is None:  # numerical: tracr reads the one output direction
        label = model._mikb_output_label
        u = np.zeros((len(residual), 1), dtype=np.float32)
        u[residual.index(label), 0] = 1.0
        return u
    label = model._mikb_output_label
    u = np.zeros((len(residual), len(enc)), dtype=np.float32)
    for value, col in enc.items():
        u[residual.index(f"{label}:{value}"), col] = 1.0
    return u


def state_dict(model: Any) -> dict[str, np.ndarray]:
    """tracr parameters in the key layout of a TL-native ``TransformerBridge`` (torch Linear:
    weight is [out, in])."""
    p = {k: {n: np.asarray(v, dtype=np.float32) for n, v in d.items()}
         for k, d in model.params.items()}
    sd = {"tok_embed.weight": p["token_embed"]["embeddings"],
          "pos.weight": p["pos_embed"]["embeddings"],
          "head.weight": _unembed(model).T.copy()}
    for layer in range(model.model_config.num_layers):
        pre = f"transformer/layer_{layer}"
        for ours, theirs in [("attn.q", "attn/query"), ("attn.k", "attn/key"),
                             ("attn.v", "attn/value"), ("attn.o", "attn/linear"),
                             ("mlp.fc_in", "mlp/linear_1"), ("mlp.fc_out", "mlp/linear_2")]:
            sd[f"layers.{layer}.{ours}.weight"] = p[f"{pre}/{theirs}"]["w"].T.copy()
            sd[f"layers.{layer}.{ours}.bias"] = p[f"{pre}/{theirs}"]["b"].copy()
    return sd


def compile_program(program: Program) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Weights and metadata (config, vocabularies, ground truth, provenance, samples)."""
    import importlib.metadata as md
    import random

    craft, model, graph = _craft_and_model(program)
    if model.model_config.layer_norm:
        raise NotImplementedError("tracr models with layer_norm=True are not converted")
    sink_name = program_sop[0].label
    model._mikb_output_label = sink_name
    sd = state_dict(model)
    cfg = model.model_config
    input_map = dict(model.input_encoder.encoding_map)
    enc = getattr(model.output_encoder, "encoding_map", None)
    rng = random.Random(0)
    samples = []
    for _ in range(N_SAMPLES):
        toks = program.sampler(rng, program.max_seq_len)
        out = model.apply([COMPILER_BOS, *toks])
        samples.append({"tokens": [_json_value(t) for t in toks],
                        "decoded": [_json_value(v) for v in out.decoded[1:]],
                                        "output": (np.asarray(out.transformer_output, dtype=np.float64)[0]
                                   @ _unembed(model)).round(5).tolist()})
    meta = {
        "model_id": program.model_id,
        "program": {"name": program.name, "library_call": program.library_call,
                    "output_sop": sink_name, "numerical": program.numerical,
                    "description": program.description},
        "provenance": {"tracr": md.version("tracr-pypi"), "jax": md.version("jax"),
                       "dm-haiku": md.version("dm-haiku"), "vocab": [_json_value(v) for v in program.vocab],
                       "max_seq_len": program.max_seq_len, "compiler_bos": COMPILER_BOS,
                       "mlp_exactness": MLP_EXACTNESS, "causal": False,
                       "weights_sha256": weights_digest(sd)},
        "cfg": {"n_layers": int(cfg.num_layers), "n_heads": int(cfg.num_heads),
                "d_model": int(sd["tok_embed.weight"].shape[1]), "d_head": int(cfg.key_size),
                "d_mlp": int(cfg.mlp_hidden_size), "n_ctx": int(sd["pos.weight"].shape[0]),
                "d_vocab": int(sd["tok_embed.weight"].shape[0]),
                "d_vocab_out": int(sd["head.weight"].shape[0]),
                "act_fn": "relu", "attention_dir": "bidirectional", "normalization_type": None},
        "input_vocab": {str(_json_value(k)): int(v) for k, v in input_map.items()},
        "output_vocab": None if enc is None else {str(_json_value(k)): int(v) for k, v in enc.items()},
        "residual_labels": list(model.residual_labels),
        "ground_truth": ground_truth(craft, model, graph),
        "samples": samples,
    }
    return sd, meta


def _json_value(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    return str(v)


def weights_digest(sd: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(sd):
        h.update(key.encode())
        h.update(np.ascontiguousarray(sd[key], dtype=np.float32).tobytes())
    return h.hexdigest()


def write(program: Program, directory: Path = WEIGHTS_DIR) -> None:
    sd, meta = compile_program(program)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(directory / f"{program.model_id}.npz", **sd)
    (directory / f"{program.model_id}.json").write_text(json.dumps(meta, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(PROGRAMS)
    for name in names:
        write(PROGRAMS[name])
        print(f"wrote {PROGRAMS[name].model_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
