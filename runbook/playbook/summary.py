"""A playbook's one-line summary: shared by the model and by `runbook list`, which must not load pydantic."""

from __future__ import annotations

import re

# The end of a sentence: a full stop (or ! ?) and a space before a capital, so "e.g. this" does not end one.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"(])")


def summarize(description: str) -> str:
    """Return the first sentence of the first paragraph, its lines joined into one."""
    paragraph = description.strip().split("\n\n", 1)[0]
    joined = " ".join(line.strip() for line in paragraph.splitlines() if line.strip())
    return _SENTENCE_END.split(joined, 1)[0]
