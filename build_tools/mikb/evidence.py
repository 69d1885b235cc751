"""What a run on a model is evidence of, decided by where the model's weights came from.

Only a model that *learned* the behaviour (pretrained weights, or trained from scratch by the
script) says anything about a paper's claim: a run on it is a **reproduction**. A model built
by hand or compiled has its circuit written into it; a run on it proves that the script finds
what is there (a **method check**, scored against the recorded ground truth) and is never
called reproduced. Random weights exercise the code path and nothing more. One table here, so
the runner, the site and the export cannot disagree.
"""

from __future__ import annotations

REPRODUCTION = "reproduction"
METHOD_CHECK = "method-check"
SMOKE_TEST = "smoke-test"
NOT_RUN_HERE = "paper-only"

EVIDENCE_BY_KIND = {
    "pretrained": REPRODUCTION,
    "trained-here": REPRODUCTION,
    "planted": METHOD_CHECK,
    "compiled": METHOD_CHECK,
    "random": SMOKE_TEST,
    "paper": NOT_RUN_HERE,  # a model a paper measured whose weights mikb cannot load
}
LABELS = {
    REPRODUCTION: "reproduction",
    METHOD_CHECK: "method check",
    SMOKE_TEST: "smoke test",
    NOT_RUN_HERE: "reported only",
}
# The word for a run of this class that finished: only a reproduction "reproduces".
DONE_LABELS = {REPRODUCTION: "reproduced", METHOD_CHECK: "method check ran", SMOKE_TEST: "smoke test ran",
               NOT_RUN_HERE: "ran"}


def evidence_of(kind: str | None) -> str:
    """The evidence class of a run on a model of ``kind`` (unknown kinds prove nothing)."""
    return EVIDENCE_BY_KIND.get(kind or "", SMOKE_TEST)
