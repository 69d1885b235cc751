"""Running reproduction scripts and publishing their results with provenance."""

from mikb.reproduce.context import ModelUnavailable, ReproContext, ScriptSpec

__all__ = ["ModelUnavailable", "ReproContext", "ScriptSpec"]
