"""Training run and progress measures for the modular-addition grokking reproduction.

Kept out of the circuit's ``reproduce.py`` so that the script reads as the experiment (what
is measured and claimed) while the bookkeeping lives here: a lean full-batch loop that
records train/test curves every ``eval_every`` steps, keeps parameter checkpoints, and
stops once the cleanup phase is over; then the progress measures are computed on those
checkpoints with the key frequencies of the final model (as the paper does, since the
frequencies are only known once the model has grokked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from mikb.lm.grokking import ModAddData, accuracy, final_logits, loss_from_logits, model_config
from mikb.lm.lean_native import LeanConfig, Params, init_params, state_copy, trainable
from mikb.lm.training import OptimConfig, train
from mikb.methods.fourier import frequency_norms, key_frequencies, split_logits


@dataclass
class GrokHistory:
    """Curves recorded during training (one entry per evaluation step)."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    weight_sq: list[float] = field(default_factory=list)
    ckpt_steps: list[int] = field(default_factory=list)
    ckpts: list[Params] = field(default_factory=list)
    stop_step: int | None = None


@dataclass(frozen=True)
class StopRule:
    """When the cleanup phase counts as over.

    Cleanup removes the memorising components, so the train/test gap closes: the run stops
    ``patience`` steps after test accuracy reaches ``min_test_acc`` and test loss has come
    within ``gap_ratio`` times the train loss.
    """

    min_test_acc: float = 0.999
    gap_ratio: float = 3.0
    patience: int = 1000
    loss_floor: float = 1e-3  # both losses this small also counts as closed (ratios get noisy)


def train_grokking(
    data: ModAddData,
    steps: int,
    optim: OptimConfig,
    seed: int,
    eval_every: int,
    ckpt_every: int,
    stop: StopRule,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> tuple[LeanConfig, Params, GrokHistory]:
    """Train the paper's model full-batch on ``data`` and record the curves.

    Training runs on ``device``; the weights are initialised on the CPU first (so a seed
    gives the same start everywhere), and the checkpoints and returned weights live on the
    CPU, so the analysis after training is the same code wherever the training ran.
    """
    cfg = model_config(data.p)
    params = {k: v.to(device) for k, v in init_params(cfg, seed).items()}
    names = trainable(cfg, params)
    x_tr, y_tr = data.tokens[data.train_idx].to(device), data.labels[data.train_idx].to(device)
    x_te, y_te = data.tokens[data.test_idx].to(device), data.labels[data.test_idx].to(device)
    hist = GrokHistory()
    state: dict[str, int | None] = {"met": None}

    def loss_fn(p: Params, _step: int) -> torch.Tensor:
        return loss_from_logits(final_logits(cfg, p, x_tr), y_tr)

    def on_eval(step: int, p: Params) -> bool:
        lt = final_logits(cfg, p, x_tr)
        le = final_logits(cfg, p, x_te)
        hist.steps.append(step)
        hist.train_loss.append(loss_from_logits(lt, y_tr).item())
        hist.test_loss.append(loss_from_logits(le, y_te).item())
        hist.train_acc.append(accuracy(lt, y_tr))
        hist.test_acc.append(accuracy(le, y_te))
        hist.weight_sq.append(sum(float(p[n].double().pow(2).sum()) for n in names))
        if step % ckpt_every == 0:
            hist.ckpt_steps.append(step)
            hist.ckpts.append(state_copy(p, "cpu"))
        if step % (eval_every * 20) == 0:
            log(
                f"step {step}: train {hist.train_loss[-1]:.3g} test {hist.test_loss[-1]:.3g} "
                f"test acc {hist.test_acc[-1]:.3f}"
            )
        met = hist.test_acc[-1] >= stop.min_test_acc and (
            hist.test_loss[-1] <= stop.gap_ratio * hist.train_loss[-1] or hist.test_loss[-1] <= stop.loss_floor
        )
        if met and state["met"] is None:
            state["met"] = step
            log(f"step {step}: train/test gap closed; stopping after {stop.patience} more steps")
        met_at = state["met"]
        return met_at is not None and step >= met_at + stop.patience

    last = train(params, names, loss_fn, steps, optim, eval_every, on_eval, progress)
    if not hist.ckpt_steps or hist.ckpt_steps[-1] != last:
        hist.ckpt_steps.append(last)
        hist.ckpts.append(state_copy(params, "cpu"))
    hist.stop_step = state["met"]
    return cfg, state_copy(params, "cpu"), hist


@dataclass
class ProgressMeasures:
    """Per-checkpoint losses of the restricted and excluded logits (nanda2023grokking §5)."""

    steps: list[int]
    restricted_loss: list[float]
    excluded_loss: list[float]
    test_loss: list[float]


def progress_measures(
    cfg: LeanConfig, data: ModAddData, hist: GrokHistory, freqs: list[int]
) -> ProgressMeasures:
    """Restricted loss (all inputs) and excluded loss (training inputs) at each checkpoint.

    Restricted loss is measured on every pair because it depends on the inputs only through
    ``a + b`` and so cannot memorise; excluded loss on the training pairs, where memorisation
    is what remains once the key-frequency directions are gone.
    """
    out = ProgressMeasures([], [], [], [])
    with torch.no_grad():
        for step, ck in zip(hist.ckpt_steps, hist.ckpts, strict=True):
            logits = final_logits(cfg, ck, data.tokens)
            restricted, excluded = split_logits(logits, data.p, freqs)
            out.steps.append(step)
            out.restricted_loss.append(loss_from_logits(restricted, data.labels).item())
            out.excluded_loss.append(
                loss_from_logits(excluded[data.train_idx], data.labels[data.train_idx]).item()
            )
            out.test_loss.append(
                loss_from_logits(logits[data.test_idx], data.labels[data.test_idx]).item()
            )
    return out


def embedding_key_frequencies(w_e: torch.Tensor, p: int) -> tuple[torch.Tensor, list[int]]:
    """Per-frequency embedding norms of the number tokens and the key frequencies."""
    norms = frequency_norms(w_e[:p])
    return norms, key_frequencies(norms)


def first_step(steps: list[int], values: list[float], pred: Callable[[float], bool]) -> int | None:
    """The first recorded step whose value satisfies ``pred`` (None if never)."""
    for s, v in zip(steps, values, strict=True):
        if pred(v):
            return s
    return None
