"""Judging a reproduced metric against a claim of the circuit entry.

On the model the paper measured, a value passes when it lies within ``tolerance`` of the
reported value (or range). On any other model (planted, trained here) the paper's number does
not apply; the entry's ``expect`` bounds for that model decide instead. Where neither applies
the value is shown without a verdict rather than judged by a rule nobody wrote down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mikb.entries import Claim


@dataclass(frozen=True)
class Verdict:
    claim_id: str
    metric: str
    value: Any
    verdict: str  # pass | fail | missing | n/a
    criterion: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.claim_id, "metric": self.metric, "value": self.value, "verdict": self.verdict,
                "criterion": self.criterion}


def judge(claim: Claim, model_id: str, metrics: dict[str, Any]) -> Verdict:
    """pass / fail against the claim's criterion for this model; ``missing`` when a criterion
    applies but the run did not record the metric (which counts against the run); ``n/a``
    when no criterion applies to this model (the paper's number concerns another model and
    the entry sets no expectation here)."""
    value = metrics.get(claim.metric)
    criterion = describe_criterion(claim, model_id)
    if value is None:
        verdict = "n/a" if _bounds(claim, model_id) is None else "missing"
        return Verdict(claim.id, claim.metric, None, verdict, criterion)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        if isinstance(value, bool):
            value = float(value)
        else:
            return Verdict(claim.id, claim.metric, value, "n/a", criterion)
    bounds = _bounds(claim, model_id)
    if bounds is None:
        return Verdict(claim.id, claim.metric, value, "n/a", criterion)
    low, high = bounds
    ok = (low is None or value >= low) and (high is None or value <= high)
    return Verdict(claim.id, claim.metric, value, "pass" if ok else "fail", criterion)


def _bounds(claim: Claim, model_id: str) -> tuple[float | None, float | None] | None:
    if model_id in claim.expect:
        rule = claim.expect[model_id]
        return rule.get("min"), rule.get("max")
    reported = claim.reported or {}
    if reported.get("model") != model_id:
        return None
    tol = claim.tolerance or 0.0
    if "value" in reported:
        return reported["value"] - tol, reported["value"] + tol
    if "range" in reported:
        low, high = reported["range"]
        return low - tol, high + tol
    return None


def describe_criterion(claim: Claim, model_id: str) -> str:
    bounds = _bounds(claim, model_id)
    if bounds is None:
        return "no criterion for this model"
    low, high = bounds
    unit = f" {claim.unit}" if claim.unit else ""
    if low is not None and high is not None:
        return f"{low:g} ≤ value ≤ {high:g}{unit}"
    if low is not None:
        return f"value ≥ {low:g}{unit}"
    return f"value ≤ {high:g}{unit}"
