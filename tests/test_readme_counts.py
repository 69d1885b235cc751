"""The README's counts are the entries' counts: a number written by hand goes stale silently,
so each one the README states is read back here and compared with what `mikb check` loads."""

from __future__ import annotations

import re

from conftest import REPO

from mikb.check import run_check

WORDS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13}


def _number(text: str) -> int:
    return int(text) if text.isdigit() else WORDS[text.lower()]


def test_readme_counts_match_the_entries() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    kb = run_check(REPO).kb
    problems = list(kb.problems.values()) if isinstance(kb.problems, dict) else list(kb.problems)
    circuits = list(kb.circuits.values())

    def kinds(c) -> set[str]:
        return {kb.models[m].kind for m in c.models if m in kb.models}

    stated = {
        "problems": (r"\*\*(\d+) open problems\*\*", len(problems)),
        "cop": (r"the (\d+) of Neel Nanda", sum(p.id.startswith("cop-") for p in problems)),
        "opmi": (r"the (\d+) posed by Sharkey", sum(p.id.startswith("opmi-") for p in problems)),
        "circuits": (r"circuit zoo of (\d+) circuits", len(circuits)),
        "pretrained": (r"(\d+) found in pretrained language models", sum("pretrained" in kinds(c) for c in circuits)),
        "trained": (r"(\d+) reproduced on models trained from scratch", sum("trained-here" in kinds(c) for c in circuits)),
        "trained-prose": (r"(\w+) circuits are reproduced\s+on models \*trained from scratch\*",
                          sum("trained-here" in kinds(c) for c in circuits)),
    }
    for name, (pattern, actual) in stated.items():
        found = re.search(pattern, readme, flags=re.IGNORECASE)
        assert found, f"README no longer states the {name} count ({pattern})"
        assert _number(found.group(1)) == actual, f"README says {found.group(1)} {name}; the entries have {actual}"
