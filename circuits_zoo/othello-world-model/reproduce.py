"""Othello world model, trained from scratch: a small Othello-GPT on a 6x6 board learns to
predict legal moves from move sequences alone; linear probes on its residual stream read the
board far better as "mine / theirs / empty" (relative to the player to move) than as
"black / white / empty"; and editing one square along its probe direction changes the
predicted legal moves the way the edited board implies (Nanda, Lee & Wattenberg 2023).

The model is trained with the lean TL-native forward (``mikb.lm.othello_gpt``) and copied
into a ``TransformerBridge``; every probe, cache and edit runs on the bridge. Probe layers,
the squares edited and the cases are chosen by the script from data, not given.
"""

from __future__ import annotations

import numpy as np
import torch

from mikb.data.othello import legal_moves, random_games
from mikb.lm.lean_native import forward, init_params, to_bridge
from mikb.lm.othello_gpt import (
    entropy_floor,
    legal_move_scores,
    move_data,
    othello_config,
    topk_sets,
    train_othello_gpt,
)
from mikb.lm.training import OptimConfig
from mikb.methods.board_probes import board_classes, fit_probe, flip_edit, probe_accuracy
from mikb.reproduce.context import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("othello-6x6-3l",),
    params={
        "board": 6,
        "n_layers": 3,
        "d_model": 64,
        "n_heads": 4,
        "d_mlp": 256,
        "train_games": 20000,
        "eval_games": 600,
        "probe_games": 1200,
        "steps": 4000,
        "batch": 64,
        "lr": 3e-3,
        "weight_decay": 0.01,
        "warmup_steps": 100,
        "eval_every": 250,
        "probe_positions": 12000,
        "edit_cases": 400,
        "edit_scale": 1.0,
        "edit_scale_sweep": [0.0, 1.0, 2.0, 4.0],
    },
    # CI-sized: a shorter run on fewer games; the model is far from perfect but the
    # relative (mine/theirs) probe already beats the colour probe.
    quick_params={"train_games": 4000, "steps": 500, "eval_games": 300, "probe_games": 400,
                  "probe_positions": 4000, "edit_cases": 150, "eval_every": 50},
    timeout_s=2400,
    description="Train a small Othello-GPT (6x6); mine/theirs vs black/white linear probes; probe-direction edits.",
)


def run(ctx: ReproContext) -> None:
    ctx.seed_everything()
    prm = ctx.params
    n = int(prm["board"])
    train_g = random_games(int(prm["train_games"]), n, seed=ctx.seed + 11)
    eval_g = random_games(int(prm["eval_games"]), n, seed=ctx.seed + 12)
    probe_g = random_games(int(prm["probe_games"]), n, seed=ctx.seed + 13)
    ctx.metric("mean_game_length", float(train_g.lengths.mean()))
    ctx.metric("share_games_full_board", float((train_g.lengths == n * n - 4).mean()))
    cfg = othello_config(n, int(prm["n_layers"]), int(prm["d_model"]), int(prm["n_heads"]), int(prm["d_mlp"]))
    train_d, eval_d = move_data(train_g), move_data(eval_g)
    optim = OptimConfig(lr=float(prm["lr"]), weight_decay=float(prm["weight_decay"]),
                        warmup_steps=int(prm["warmup_steps"]), grad_clip=1.0)
    steps = int(prm["steps"])
    params, hist = train_othello_gpt(
        cfg, train_d, eval_d, steps=steps, batch=int(prm["batch"]), optim=optim, seed=ctx.seed,
        eval_every=int(prm["eval_every"]), progress=lambda it: ctx.progress(it, desc="training", total=steps),
        log=ctx.log)
    ctx.set_weights_source(f"trained here from scratch by this script (seed {ctx.seed}, {steps} steps of "
                           f"{prm['batch']} games, {prm['train_games']} random games)")

    bridge = to_bridge(cfg, params, seed=ctx.seed)
    with torch.no_grad():
        logits = bridge(eval_d.tokens)
        lean = forward(cfg, params, eval_d.tokens)
    ctx.metric("bridge_lean_max_abs_diff", float((logits - lean).abs().max()))
    scores = legal_move_scores(logits, eval_d.legal)
    ctx.metric("top1_legal_move_acc", scores["top1_legal"])
    ctx.metric("topk_legal_set_match", scores["topk_set_match"])
    ctx.metric("legal_move_prob_mass", scores["legal_mass"])
    m = eval_d.has_target
    ctx.metric("eval_loss", float(torch.nn.functional.cross_entropy(logits[m], eval_d.targets[m])))
    ctx.metric("eval_loss_floor", entropy_floor(eval_d.legal))
    # Chance: a uniform guess among the empty squares.
    has = eval_d.legal.any(-1)
    n_empty = torch.from_numpy((eval_g.boards[:, :-1] == 0).sum(-1))[has].double()
    ctx.metric("chance_top1_legal", float((eval_d.legal[has].sum(-1) / n_empty).mean()))

    # --- probes, layer by layer ---------------------------------------------------------
    hooks = [f"blocks.{i}.hook_resid_pre" for i in range(cfg.n_layers)] + [
        f"blocks.{cfg.n_layers - 1}.hook_resid_post"]
    probe_d = move_data(probe_g)
    pos_mask = probe_d.has_target.numpy()
    gi, ti = np.nonzero(pos_mask)
    rng = np.random.default_rng(ctx.seed + 14)
    half = int(prm["probe_games"]) // 2  # probes fit on the first half of the games, scored on the second
    train_sel = np.flatnonzero(gi < half)
    test_sel = np.flatnonzero(gi >= half)
    train_sel = rng.choice(train_sel, size=min(len(train_sel), int(prm["probe_positions"])), replace=False)
    rel = torch.from_numpy(probe_g.relative_boards()[:, :-1])
    col = torch.from_numpy(probe_g.boards[:, :-1])
    y_rel, y_col = board_classes(rel), board_classes(col)

    def resid_stack(model) -> list[torch.Tensor]:
        with torch.no_grad():
            _, cache = model.run_with_cache(probe_d.tokens, names_filter=lambda name: name in hooks)
        return [cache[h] for h in hooks]

    resid = resid_stack(bridge)
    untrained = to_bridge(cfg, init_params(cfg, seed=ctx.seed), seed=ctx.seed)
    resid_untrained = resid_stack(untrained)
    acc = {k: [] for k in ("relative", "colour", "relative_occ", "colour_occ", "untrained_relative_occ")}
    probes = []
    for li in range(len(hooks)):
        x = resid[li][gi, ti]
        out = {}
        for name, y in (("relative", y_rel), ("colour", y_col)):
            yy = y[gi, ti]
            pr = fit_probe(x[train_sel], yy[train_sel])
            out[name] = probe_accuracy(pr, x[test_sel], yy[test_sel])
            if name == "relative":
                probes.append(pr)
        xu = resid_untrained[li][gi, ti]
        pu = fit_probe(xu[train_sel], y_rel[gi, ti][train_sel])
        acc["untrained_relative_occ"].append(probe_accuracy(pu, xu[test_sel], y_rel[gi, ti][test_sel])["occupied"])
        for name in ("relative", "colour"):
            acc[name].append(out[name]["all"])
            acc[name + "_occ"].append(out[name]["occupied"])
        ctx.log(f"layer {li} ({hooks[li]}): relative {out['relative']['all']:.3f} "
                f"(occupied {out['relative']['occupied']:.3f}), colour {out['colour']['all']:.3f} "
                f"(occupied {out['colour']['occupied']:.3f})")
    ctx.metric("probe_layers", hooks)
    ctx.metric("probe_acc_relative", acc["relative"])
    ctx.metric("probe_acc_colour", acc["colour"])
    ctx.metric("probe_acc_relative_occupied", acc["relative_occ"])
    ctx.metric("probe_acc_colour_occupied", acc["colour_occ"])
    ctx.metric("probe_acc_untrained_relative_occupied", acc["untrained_relative_occ"])
    best = int(np.argmax(acc["relative"]))
    ctx.metric("best_probe_layer", best)
    ctx.metric("probe_acc_relative_best", acc["relative"][best])
    ctx.metric("probe_acc_colour_best", max(acc["colour"]))
    ctx.metric("probe_acc_relative_occupied_best", acc["relative_occ"][best])
    ctx.metric("probe_acc_colour_occupied_best", max(acc["colour_occ"]))
    ctx.metric("relative_minus_colour_occupied_best", acc["relative_occ"][best] - max(acc["colour_occ"]))
    ctx.metric("probe_acc_untrained_relative_occupied_best", max(acc["untrained_relative_occ"]))
    ctx.metric("relative_gain_over_untrained_occupied_best",
               acc["relative_occ"][best] - max(acc["untrained_relative_occ"]))

    # --- edits along the mine/theirs directions ------------------------------------------
    cases = _edit_cases(probe_g, half, int(prm["edit_cases"]), np.random.default_rng(ctx.seed + 15))
    ctx.metric("edit_n_cases", len(cases["game"]))
    g_idx, t_idx = torch.from_numpy(cases["game"]), torch.from_numpy(cases["t"])
    sq = torch.from_numpy(cases["square"])
    legal_new = torch.from_numpy(cases["legal_edited"])
    legal_old = torch.from_numpy(cases["legal_orig"])
    k_new = legal_new.sum(-1)
    tokens = probe_d.tokens[g_idx]
    rows = torch.arange(len(g_idx))
    with torch.no_grad():
        base = bridge(tokens)[rows, t_idx]
    base_new = topk_sets(base, k_new).eq(legal_new).all(-1).float().mean().item()
    base_old = topk_sets(base, legal_old.sum(-1)).eq(legal_old).all(-1).float().mean().item()
    ctx.metric("edit_baseline_match_edited_board", base_new)
    ctx.metric("edit_baseline_match_original_board", base_old)
    base_sc = _edit_scores(base, base, legal_new, legal_old)
    ctx.metric("edit_baseline_mean_errors", base_sc["errors"])
    gen = torch.Generator().manual_seed(ctx.seed + 16)
    edit_layers = list(range(1, cfg.n_layers))  # resid_pre of blocks 1..L-1: inside the model
    sc = {"probe": [], "random": []}
    for li in edit_layers:
        x = resid[li][g_idx, t_idx]
        delta = flip_edit(probes[li], x, sq, scale=float(prm["edit_scale"]))
        rand = torch.randn(delta.shape, generator=gen)
        rand = rand / rand.norm(dim=-1, keepdim=True) * delta.norm(dim=-1, keepdim=True)
        for name, dv in (("probe", delta), ("random", rand)):
            sc[name].append(_edit_scores(_run_edited(bridge, tokens, hooks[li], t_idx, dv), base, legal_new, legal_old))
        p_, r_ = sc["probe"][-1], sc["random"][-1]
        ctx.log(f"edit at {hooks[li]}: top-k = edited legal moves {p_['set_match']:.3f} (random {r_['set_match']:.3f}, "
                f"unedited {base_new:.3f}); errors {p_['errors']:.2f} (random {r_['errors']:.2f}, unedited "
                f"{base_sc['errors']:.2f}); changed squares moved the right way {p_['direction']:.3f} "
                f"(random {r_['direction']:.3f})")
    ctx.metric("edit_layers", [hooks[li] for li in edit_layers])
    for key, label in (("set_match", "success"), ("errors", "mean_errors"), ("direction", "direction_acc")):
        ctx.metric(f"edit_{label}_per_layer", [v[key] for v in sc["probe"]])
        ctx.metric(f"edit_random_{label}_per_layer", [v[key] for v in sc["random"]])
    per_layer = [v["set_match"] for v in sc["probe"]]
    per_layer_rand = [v["set_match"] for v in sc["random"]]
    mid = cfg.n_layers // 2
    j = edit_layers.index(mid)
    pm, rm = sc["probe"][j], sc["random"][j]
    ctx.metric("edit_layer_middle", hooks[mid])
    ctx.metric("edit_success_middle", pm["set_match"])
    ctx.metric("edit_random_direction_success_middle", rm["set_match"])
    ctx.metric("edit_success_gain_middle", pm["set_match"] - base_new)
    ctx.metric("edit_success_over_random_middle", pm["set_match"] - rm["set_match"])
    ctx.metric("edit_mean_errors_middle", pm["errors"])
    ctx.metric("edit_random_mean_errors_middle", rm["errors"])
    ctx.metric("edit_error_reduction_middle", 1 - pm["errors"] / max(base_sc["errors"], 1e-9))
    ctx.metric("edit_direction_acc_middle", pm["direction"])
    ctx.metric("edit_random_direction_acc_middle", rm["direction"])
    ctx.metric("edit_success_best", max(per_layer))

    # Li et al.'s protocol: the same edit at the middle layer and again at every later one.
    rel_sq = torch.from_numpy(probe_g.relative_boards()[cases["game"], cases["t"], cases["square"]]).float()
    target = rel_sq  # mine (+1) becomes theirs (margin > 0), theirs (-1) becomes mine
    onward = {}
    for name in ("probe", "random"):
        edited = _run_edited_onward(bridge, tokens, hooks, probes, range(mid, cfg.n_layers), t_idx, sq, target,
                                    float(prm["edit_scale"]), random_gen=None if name == "probe" else
                                    torch.Generator().manual_seed(ctx.seed + 17))
        onward[name] = _edit_scores(edited, base, legal_new, legal_old)
    po, ro = onward["probe"], onward["random"]
    ctx.metric("edit_onward_success", po["set_match"])
    ctx.metric("edit_onward_random_success", ro["set_match"])
    ctx.metric("edit_onward_mean_errors", po["errors"])
    ctx.metric("edit_onward_random_mean_errors", ro["errors"])
    ctx.metric("edit_onward_error_reduction", 1 - po["errors"] / max(base_sc["errors"], 1e-9))
    ctx.metric("edit_onward_direction_acc", po["direction"])
    ctx.metric("edit_onward_random_direction_acc", ro["direction"])
    ctx.log(f"edit from {hooks[mid]} onward: top-k = edited legal moves {po['set_match']:.3f} (random "
            f"{ro['set_match']:.3f}); errors {po['errors']:.2f} (random {ro['errors']:.2f}); right-way "
            f"{po['direction']:.3f} (random {ro['direction']:.3f})")
    x = resid[mid][g_idx, t_idx]
    by_scale = []
    for scale in prm["edit_scale_sweep"]:
        edited = _run_edited(bridge, tokens, hooks[mid], t_idx, flip_edit(probes[mid], x, sq, scale=float(scale)))
        by_scale.append(_edit_scores(edited, base, legal_new, legal_old)["set_match"])
    ctx.metric("edit_scale_sweep", list(prm["edit_scale_sweep"]))
    ctx.metric("edit_success_middle_by_scale", by_scale)
    ctx.log(f"edit at {hooks[mid]} by scale {list(prm['edit_scale_sweep'])}: {by_scale}")
    ctx.note(
        f"Probes: at {hooks[best]} the mine/theirs probe reads {acc['relative_occ'][best]:.1%} of occupied squares "
        f"correctly, the best black/white probe {max(acc['colour_occ']):.1%}. Editing one square's mine/theirs "
        f"direction at {hooks[mid]} makes the model's top-k moves equal the edited board's legal moves in "
        f"{pm['set_match']:.0%} of {len(g_idx)} cases (unedited: {base_new:.0%}; random direction of the same "
        f"norm: {rm['set_match']:.0%}); the top-k moves contain {pm['errors']:.2f} moves illegal on the edited "
        f"board on average (unedited {base_sc['errors']:.2f}, random {rm['errors']:.2f}).")
    ctx.save_json("curves.json", {"steps": hist.steps, "eval_loss": hist.loss, "top1_legal": hist.top1_legal,
                                  "topk_set_match": hist.topk_set_match})
    _figures(ctx, hooks, acc, edit_layers, per_layer + [po['set_match']], per_layer_rand + [ro['set_match']],
             base_new, hist, mid)


def _edit_cases(games, first_game: int, num: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Cases (game, position, square) from the held-out games: an occupied square whose colour
    flip changes the mover's legal moves and leaves at least one."""
    n = games.n
    out = {k: [] for k in ("game", "t", "square", "legal_edited", "legal_orig")}
    movers = games.mover_after
    tries = 0
    while len(out["game"]) < num and tries < num * 50:
        tries += 1
        g = int(rng.integers(first_game, games.moves.shape[0]))
        t = int(rng.integers(0, games.lengths[g] - 1))
        board = games.boards[g, t]
        occ = np.flatnonzero(board != 0)
        s = int(rng.choice(occ))
        edited = board.copy()
        edited[s] = -edited[s]
        leg = legal_moves(edited.reshape(1, n, n), np.array([movers[t]]))[0].reshape(-1)
        orig = games.legal[g, t]
        if not leg.any() or (leg == orig).all():
            continue
        for k, v in (("game", g), ("t", t), ("square", s), ("legal_edited", leg), ("legal_orig", orig)):
            out[k].append(v)
    return {k: np.array(v) for k, v in out.items()}


def _edit_scores(edited: torch.Tensor, base: torch.Tensor, legal_new: torch.Tensor,
                 legal_old: torch.Tensor) -> dict[str, float]:
    """``set_match``: share of cases whose top-k moves (k = legal moves on the edited board)
    are exactly the edited board's legal moves; ``errors``: mean number of those top-k moves
    that are illegal on the edited board (Li et al.'s error count); ``direction``: share of the
    squares whose legality the edit changes whose log-probability moved the right way (up
    for newly legal, down for newly illegal)."""
    top = topk_sets(edited, legal_new.sum(-1))
    change = edited.log_softmax(-1) - base.log_softmax(-1)
    gained, lost = legal_new & ~legal_old, legal_old & ~legal_new
    right = (change > 0) & gained | (change < 0) & lost
    n_changed = int((gained | lost).sum())
    return {
        "set_match": top.eq(legal_new).all(-1).float().mean().item(),
        "errors": (top & ~legal_new).sum(-1).float().mean().item(),
        "direction": float(right.sum()) / n_changed if n_changed else None,
    }


def _run_edited_onward(bridge, tokens, hooks, probes, layers, t_idx, squares, target, scale,
                       random_gen=None) -> torch.Tensor:
    """Apply the targeted edit at the current position before each block in ``layers``, each
    with that layer's probe and computed from the (already edited) residual it sees; with
    ``random_gen``, a random direction of the same norm instead."""
    rows = torch.arange(tokens.shape[0])

    def make(li):
        def add(resid, hook=None):
            resid = resid.clone()
            delta = flip_edit(probes[li], resid[rows, t_idx], squares, scale=scale, target=target)
            if random_gen is not None:
                r = torch.randn(delta.shape, generator=random_gen)
                delta = r / r.norm(dim=-1, keepdim=True) * delta.norm(dim=-1, keepdim=True)
            resid[rows, t_idx] += delta
            return resid
        return add

    with torch.no_grad():
        return bridge.run_with_hooks(tokens, fwd_hooks=[(hooks[li], make(li)) for li in layers])[rows, t_idx]


def _run_edited(bridge, tokens: torch.Tensor, hook: str, t_idx: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(tokens.shape[0])

    def add(resid, hook=None):
        resid = resid.clone()
        resid[rows, t_idx] += delta
        return resid

    with torch.no_grad():
        return bridge.run_with_hooks(tokens, fwd_hooks=[(hook, add)])[rows, t_idx]


def _figures(ctx, hooks, acc, edit_layers, per_layer, per_layer_rand, base_new, hist, mid) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{i}" for i in range(len(hooks) - 1)] + ["final"]
    xs = list(range(len(hooks)))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(xs, acc["relative_occ"], "o-", label="mine / theirs / empty probe")
    ax.plot(xs, acc["colour_occ"], "s-", label="black / white / empty probe")
    ax.plot(xs, acc["untrained_relative_occ"], "^:", color="grey", label="mine / theirs probe, untrained model")
    ax.axhline(0.5, color="black", lw=0.6, ls="--", label="guessing the colour")
    ax.set_xticks(xs, labels)
    ax.set_xlabel("residual stream before block (layer)")
    ax.set_ylabel("probe accuracy on occupied squares")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Linear probes read the board relative to the player to move", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "probe_accuracy", caption="Held-out accuracy of linear probes on occupied squares, per layer, "
                    "for the relative (mine/theirs) and the absolute (black/white) encoding.")

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    w = 0.35
    ex = np.arange(len(edit_layers) + 1)
    ax.bar(ex - w / 2, per_layer, w, label="edit along the probe's mine/theirs direction")
    ax.bar(ex + w / 2, per_layer_rand, w, label="random direction, same norm")
    ax.axhline(base_new, color="black", lw=0.8, ls="--", label="no edit")
    ax.set_xticks(ex, [f"{li} only" for li in edit_layers] + [f"{mid} onward"])
    ax.set_xlabel("blocks edited before (residual stream, current position)")
    ax.set_ylabel("share of cases: top-k = edited board's legal moves")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Flipping one square in the residual stream changes the predicted legal moves", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "edit_success", caption="Share of single-square edits after which the model's top-k moves "
                    "(k = legal moves on the edited board) are exactly the edited board's legal moves, for an "
                    "edit before one block and for the same edit before the middle block and every later one.")

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.plot(hist.steps, hist.top1_legal, label="top-1 move is legal")
    ax.plot(hist.steps, hist.topk_set_match, label="top-k moves = legal moves")
    ax.set_xlabel("training step")
    ax.set_ylabel("share of held-out positions")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Legal-move accuracy during training", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "training", caption="Legal-move accuracy on held-out games during training.")
