"""Load a committed tracr-compiled model into a TransformerBridge, without jax.

``load(model_id)`` gives a :class:`CompiledModel`: the bridge (``boot_native`` with the
committed weights), the encoders between RASP values and token ids, the ground truth in graph
edge ids and a sampler of clean/corrupted prompts.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mikb.compiled.programs import COMPILER_BOS, PROGRAMS, Program

WEIGHTS_DIR = Path(__file__).parent / "weights"


def available() -> list[str]:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("tracr-*.json"))


@dataclass
class CompiledModel:
    model_id: str
    meta: dict[str, Any]
    state_dict: dict[str, torch.Tensor]

    @property
    def program(self) -> Program:
        return PROGRAMS[self.meta["program"]["name"]]

    @property
    def numerical(self) -> bool:
        return bool(self.meta["program"]["numerical"])

    @property
    def ground_truth_edges(self) -> set[str]:
        return set(self.meta["ground_truth"]["edges"])

    @property
    def ground_truth_nodes(self) -> set[str]:
        return {c["node"] for c in self.meta["ground_truth"]["components"]}

    @cached_property
    def bridge(self) -> Any:
        import transformer_lens.model_bridge.sources  # noqa: F401 - registers boot_native
        from transformer_lens.model_bridge import TransformerBridge

        cfg = dict(self.meta["cfg"])
        cfg.update({"seed": 0, "attn_only": False, "positional_embedding_type": "standard"})
        model = TransformerBridge.boot_native(cfg)
        missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
        wanted = set(self.state_dict)
        if unexpected or any(k in wanted for k in missing):
            raise RuntimeError(f"weights did not load: missing {missing}, unexpected {unexpected}")
        model.eval()
        return model

    def encode(self, values: list[Any]) -> torch.Tensor:
        """RASP values (no BOS) -> token ids with BOS prepended, [seq]."""
        vocab = self.meta["input_vocab"]
        return torch.tensor([vocab[COMPILER_BOS]] + [vocab[str(v)] for v in values])

    def sample_tokens(self, n: int, seed: int) -> torch.Tensor:
        """``n`` prompts of full length from the program's sampler, [n, max_seq_len + 1]."""
        rng = random.Random(seed)
        length = self.meta["provenance"]["max_seq_len"]
        return torch.stack([self.encode(self.program.sampler(rng, length)) for _ in range(n)])

    def output_positions(self) -> slice:
        """Positions the program's output is read at (every one after BOS)."""
        return slice(1, None)


def load(model_id: str) -> CompiledModel:
    meta_path = WEIGHTS_DIR / f"{model_id}.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no compiled model {model_id!r}; have {available()}")
    meta = json.loads(meta_path.read_text())
    with np.load(WEIGHTS_DIR / f"{model_id}.npz") as npz:
        sd = {k: torch.tensor(npz[k]) for k in npz.files}
    return CompiledModel(model_id, meta, sd)
