"""Load the models the IOI scripts support, failing fast where weights are unreachable.

Why: GPT-2 small comes from the Hugging Face hub, which mikb's CI cannot reach; a script must
then raise `ModelUnavailable` within seconds (offline mode, no retries) instead of hanging, so
the runner records "not run" and moves on. The planted model is built locally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mikb.reproduce.context import ModelUnavailable


@dataclass
class LoadedModel:
    model: Any
    names: list[str] | None  # names the dataset may use (None: every one-token paper name)
    weights_source: str
    ground_truth: dict[str, str] | None = None


def _boot_gpt2(device: str) -> Any:
    """The raw download-and-boot step (tests replace it with a random GPT-2-shaped bridge)."""
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers("gpt2", device=device)


def load_gpt2_small(device: str = "cpu") -> Any:
    """GPT-2 small through TransformerBridge.boot_transformers, from the local HF cache only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        model = _boot_gpt2(device)
    except Exception as exc:  # noqa: BLE001 - any failure to get weights means "unavailable"
        raise ModelUnavailable(
            "GPT-2 small weights ('gpt2' on the Hugging Face hub) are not in the local cache and "
            "the hub is unreachable (offline mode). Run where the hub is reachable: "
            "`HF_HUB_OFFLINE=0 mikb reproduce <circuit> --model gpt2-small`, or pre-download with "
            "`huggingface-cli download gpt2` and rerun. Cause: "
            f"{type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    # Fold LayerNorm weights and centre the unembedding (TransformerLens' usual processing):
    # DLA and our direct-effect maths need an identity-affine final norm.
    model.enable_compatibility_mode()
    model.eval()
    return model


def load_model(model_id: str, device: str = "cpu") -> LoadedModel:
    """The model behind a model id of circuits_zoo/models.yaml (gpt2-small or planted-ioi)."""
    if model_id == "gpt2-small":
        return LoadedModel(load_gpt2_small(device), None, "Hugging Face hub: gpt2")
    if model_id == "planted-ioi":
        from mikb.lm.planted_ioi import build_planted_ioi, ground_truth, planted_names

        return LoadedModel(
            build_planted_ioi(device),
            planted_names(),
            "planted: weights set by hand in mikb.lm.planted_ioi",
            ground_truth(),
        )
    raise ModelUnavailable(f"model {model_id!r} is not supported by the IOI scripts")
