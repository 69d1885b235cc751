"""Reproduce the localisation of athlete -> sport recall in Pythia-2.8B (nanda2023factfinding).

Prompts "Fact: FIRST LAST plays the sport of" for athletes of (American) football, baseball and
basketball whose names are two tokens; the metric is the logit of the right sport minus the mean
logit of the other two. The corrupted prompt names an athlete of another sport. Three families
of components are patched (clean into corrupted) by layer: each MLP's output at the surname
token (where the lookup should happen), each attention layer's output at the surname token
(moving the first name onto it) and each attention layer's output at the final token (moving
the sport to the prediction). The strongest layers of each family are the discovered
components; on pythia-2-8b the sequence's MLPs 2-6 and attention layers 0-1 are scored too.
"""

from __future__ import annotations

import random

import torch
from mikb.lm.pretrained import load_for
from mikb.methods.prompt_tasks import (
    FLAGS,
    PromptPairs,
    batched_patching,
    clean_and_corrupted,
    stack_prompts,
    top_layers,
)
from mikb.reproduce import ReproContext, ScriptSpec

PAPER_MLPS = [2, 3, 4, 5, 6]  # the "effective model" of Fact Finding post 3
PAPER_ATTN = [0, 1]  # attention heads in layers 0 and 1 move the first name onto the surname
SPORTS = ("football", "baseball", "basketball")
ATHLETES = {
    "football": ["Tom Brady", "Peyton Manning", "Aaron Rodgers", "Drew Brees", "Joe Montana",
                 "Jerry Rice", "Brett Favre", "Dan Marino", "Walter Payton", "Barry Sanders",
                 "Emmitt Smith", "John Elway", "Randy Moss", "Troy Aikman", "Eli Manning",
                 "Cam Newton", "Ray Lewis", "Joe Namath", "Tony Romo", "Jim Brown"],
    "baseball": ["Babe Ruth", "Derek Jeter", "Barry Bonds", "Ken Griffey", "Hank Aaron",
                 "Willie Mays", "Mickey Mantle", "Lou Gehrig", "Ted Williams", "Pete Rose",
                 "Alex Rodriguez", "David Ortiz", "Mike Trout", "Roger Clemens", "Cal Ripken",
                 "Jackie Robinson", "Nolan Ryan", "Randy Johnson", "Albert Pujols", "Joe DiMaggio"],
    "basketball": ["Michael Jordan", "LeBron James", "Kobe Bryant", "Magic Johnson", "Larry Bird",
                   "Tim Duncan", "Kevin Durant", "Stephen Curry", "Dirk Nowitzki", "Allen Iverson",
                   "Dwyane Wade", "Kevin Garnett", "Scottie Pippen", "Charles Barkley",
                   "Chris Paul", "James Harden", "Russell Westbrook", "Dennis Rodman",
                   "Carmelo Anthony", "Paul Pierce"],
}

SPEC = ScriptSpec(
    models=("pythia-2-8b",),
    params={"n_prompts": 60, "top_k": 5, "threshold": 0.05},
    quick_params={"n_prompts": 4},
    devices=("cpu", "cuda"),
    description="Athlete -> sport recall: layer patching of MLPs and attention by position.",
)


def make_prompts(tok, n: int, seed: int):
    rng = random.Random(seed)
    people = [(name, s) for s in SPORTS for name in ATHLETES[s]
              if all(tok.single(f" {w}") is not None for w in name.split())]
    sport_ids = torch.tensor([tok.encode(f" {s}")[0] for s in SPORTS])
    rng.shuffle(people)
    people = people[:n]
    rows, bad, answers = [], [], []
    for name, sport in people:
        other = rng.choice([p for p in people if p[1] != sport] or people)
        rows.append([tok.bos_id] + tok.encode(f"Fact: {name} plays the sport of"))
        bad.append([tok.bos_id] + tok.encode(f"Fact: {other[0]} plays the sport of"))
        answers.append(SPORTS.index(sport))
    surname = len([tok.bos_id] + tok.encode(f"Fact: {people[0][0]}")) - 1
    return stack_prompts(rows), stack_prompts(bad), torch.tensor(answers), sport_ids, surname


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model, p = lm.model, ctx.params
    clean, corrupted, answers, sport_ids, surname = make_prompts(lm.tok, int(p["n_prompts"]),
                                                                 ctx.seed)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        s = logits[:, -1, sport_ids]  # [batch, 3]
        right = s.gather(-1, answers[:, None]).squeeze(-1)
        return right - (s.sum(-1) - right) / 2

    pairs = PromptPairs(clean, corrupted, metric)
    ctx.metric("flags", {**FLAGS, "metric": "logit(right sport) - mean logit(other two sports)",
                         "corruption": "an athlete of a different sport", "scores": "signed"})
    ctx.metric("n_prompts", int(clean.shape[0]))
    m_clean, m_corrupt, cache, _ = clean_and_corrupted(model, pairs)
    ctx.metric("logit_diff_clean", m_clean)
    ctx.metric("logit_diff_corrupted", m_corrupt)
    with torch.no_grad():
        pred = model(clean)[:, -1, sport_ids].argmax(-1)
    ctx.metric("accuracy_three_sports", (pred == answers).float().mean().item())

    def at(pos: int):
        def fn(act: torch.Tensor, clean_act: torch.Tensor) -> torch.Tensor:
            act[:, pos] = clean_act[:, pos]
            return act
        return fn

    n_l = model.cfg.n_layers
    span = (m_clean - m_corrupt) or 1e-9

    def family(hook: str, pos: int) -> torch.Tensor:
        patches = [(f"blocks.{la}.{hook}", at(pos)) for la in range(n_l)]
        return (batched_patching(model, pairs, cache, patches) - m_corrupt) / span

    mlp_surname = family("hook_mlp_out", surname)
    attn_surname = family("hook_attn_out", surname)
    attn_final = family("hook_attn_out", clean.shape[1] - 1)
    k, thr = int(p["top_k"]), float(p["threshold"])
    ctx.metric("mlp_patching_surname", mlp_surname)
    ctx.metric("attn_patching_surname", attn_surname)
    ctx.metric("attn_patching_final", attn_final)
    ctx.metric("discovered_components", {
        "lookup MLP (surname token)": top_layers(mlp_surname, k, thr),
        "first-name attention (surname token)": top_layers(attn_surname, k, thr),
        "attribute-moving attention (final token)": top_layers(attn_final, k, thr)})
    if ctx.model_id == "pythia-2-8b":
        ctx.metric("paper_mlps_patching_surname",
                   {str(m): float(mlp_surname[m]) for m in PAPER_MLPS if m < n_l})
        ctx.metric("paper_mlps_patching_surname_sum",
                   float(mlp_surname[[m for m in PAPER_MLPS if m < n_l]].sum()))
        ctx.metric("paper_attn_patching_surname",
                   {str(a): float(attn_surname[a]) for a in PAPER_ATTN})
