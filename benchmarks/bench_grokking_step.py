"""Why the grokking reproduction trains with a lean loop: one full-batch training step of the
paper's model, lean plain-torch forward vs the same weights in a TransformerBridge.

Both run in this process, interleaved, from identical weights on the full-run batch (p = 113,
30% of the pairs), with the same loss (float64 cross-entropy at the "=" position) and the same
AdamW settings over the same parameters (biases held at zero in both). The script first
checks that the two give the same loss, so the timing compares equal work. Prints the median
milliseconds per step of each and the ratio bridge / lean.

    python benchmarks/bench_grokking_step.py [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from mikb.lm.grokking import final_logits, loss_from_logits, make_data, model_config
from mikb.lm.lean_native import init_params, to_bridge, trainable

P, FRAC_TRAIN, SEED = 113, 0.3, 0


def _adamw(leaves: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(leaves, lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))


def _stepper(loss_fn: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> Callable[[], float]:
    opt = _adamw(leaves)

    def step() -> float:
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def _median_ms(steppers: dict[str, Callable[[], float]], steps: int, repeats: int) -> dict[str, float]:
    """Median ms per step of each stepper; the stepper blocks alternate within every repeat so
    that a slow spell of the machine hits both."""
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(repeats):
        for name, step in steppers.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - t0) / steps * 1000)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    cfg = model_config(P)
    data = make_data(P, FRAC_TRAIN, SEED)
    x, y = data.tokens[data.train_idx], data.labels[data.train_idx]

    lean = init_params(cfg, SEED)
    bridge = to_bridge(cfg, lean, seed=SEED)
    names = set(trainable(cfg, lean))
    for name in names:
        lean[name].requires_grad_(True)
    bridge_leaves = [t for n, t in bridge.named_parameters() if n.replace("._original_component", "") in names]
    for name, tensor in bridge.named_parameters():
        tensor.requires_grad_(name.replace("._original_component", "") in names)

    lean_step = _stepper(lambda: loss_from_logits(final_logits(cfg, lean, x), y), [lean[n] for n in sorted(names)])
    bridge_step = _stepper(lambda: loss_from_logits(bridge(x)[:, -1], y), bridge_leaves)
    first_lean, first_bridge = lean_step(), bridge_step()
    if abs(first_lean - first_bridge) > 1e-4 * abs(first_lean):
        raise SystemExit(f"the two models disagree (loss {first_lean} vs {first_bridge}): not the same work")

    ms = _median_ms({"lean": lean_step, "bridge": bridge_step}, args.steps, args.repeats)
    lean_ms, bridge_ms = ms["lean"], ms["bridge"]
    print(f"full-batch step, p={P}, {len(x)} training pairs, {torch.get_num_threads()} threads")
    print(f"{'lean (mikb.lm.lean_native)':34} {lean_ms:8.1f} ms/step")
    print(f"{'TransformerBridge.boot_native':34} {bridge_ms:8.1f} ms/step")
    print(f"ratio bridge / lean: {bridge_ms / lean_ms:.2f}x")


if __name__ == "__main__":
    main()
