"""Masking of secrets in everything runbook shows or keeps: console lines, reports, JSON.

Pure: no I/O. One `Redactor` per run knows the secret values (database password, variables marked
secret) and also masks what looks like a secret without being known: URL passwords and
`PASSWORD=...` / `--password=...` style arguments.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

MASK = "******"
# Shorter values would mask ordinary words and digits all over a report.
MIN_SECRET_LENGTH = 3

# `pass` only as a whole word part (DB_PASS, PASS) so that BYPASS or PASSENGER are not secrets.
SECRET_KEY_RE = re.compile(
    r"pass(?:word|wd|phrase)|(?<![a-z])pass(?![a-z])|secret|token|credential"
    r"|api[_-]?key|access[_-]?key|private[_-]?key",
    re.IGNORECASE,
)

# scheme://user:password@host, up to the last `@` because passwords are not always percent-encoded.
# The lookbehinds anchor matches at token starts, which keeps the scan linear on long output lines.
_URL_PASSWORD_RE = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*:)(?P<secret>[^\s/]*[^\s/@])(?=@)"
)
# NAME=value, NAME: value, "name": "value", --name=value and --name value, where NAME is secret-named.
# A space-separated value counts only after an option (`--password x`), never in prose.
_ASSIGNMENT_RE = re.compile(
    r"(?<![\w.-])(?P<key>(?P<option>--)?[A-Za-z_][\w.-]*)(?P<quote>[\"']?)"
    r"(?P<sep>[ \t]*[=:][ \t]*|(?(option)[ \t]+(?=[^\s-])|(?!)))"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s,;&\"'}\])]+)"
)


def is_secret_name(name: str) -> bool:
    """Return True when a variable or key name says its value is a secret."""
    return bool(SECRET_KEY_RE.search(name))


class Redactor:
    """Replace known secret values and secret-looking fragments with `******`."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Return the known secret values, longest first."""
        return tuple(sorted(self._secrets, key=lambda s: (-len(s), s)))

    def add(self, value: object) -> None:
        """Remember a secret value (and its URL- and shell-quoted forms) to mask from now on."""
        if value is None or isinstance(value, bool):
            return
        text = str(value)
        if len(text) < MIN_SECRET_LENGTH or text == MASK:
            return
        # The same password shows up percent-encoded in URLs and quoted in rendered commands.
        for form in (text, quote(text, safe=""), shlex.quote(text)):
            if form not in self._secrets:
                self._secrets.add(form)
                self._pattern = None

    def learn(self, obj: Any) -> None:
        """Add every value found under a secret-named key in nested dicts and lists."""
        if isinstance(obj, Mapping):
            for key, item in obj.items():
                if isinstance(key, str) and is_secret_name(key) and not isinstance(item, Mapping | list):
                    self.add(item)
                else:
                    self.learn(item)
        elif isinstance(obj, list | tuple):
            for item in obj:
                self.learn(item)

    def text(self, s: str) -> str:
        """Return s with every known secret and every secret-looking fragment masked."""
        if not s:
            return s
        if self._secrets:
            if self._pattern is None:
                # Longest first, so a secret that contains another one is masked whole.
                self._pattern = re.compile("|".join(re.escape(x) for x in self.secrets))
            s = self._pattern.sub(MASK, s)
        s = _URL_PASSWORD_RE.sub(lambda m: m["head"] + MASK, s)
        return _ASSIGNMENT_RE.sub(_mask_assignment, s)

    def value(self, obj: Any) -> Any:
        """Return a copy of obj with secret-named keys masked and every string passed through text()."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {
                key: (
                    MASK
                    if isinstance(key, str) and is_secret_name(key) and item not in (None, "")
                    else self.value(item)
                )
                for key, item in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self.value(item) for item in obj]
        return obj


def _mask_assignment(match: re.Match[str]) -> str:
    key, value = match["key"], match["value"]
    head = key + match["quote"] + match["sep"]
    if not is_secret_name(key):
        # The value may hold an assignment of its own: `env=PGPASSWORD=x`.
        return head + _ASSIGNMENT_RE.sub(_mask_assignment, value)
    if value == MASK:
        return match[0]
    if value[0] in "\"'":  # keep the quotes so the line still reads as it did
        return head + value[0] + MASK + value[-1]
    return head + MASK


class StreamRedactor:
    """Mask a stream that arrives in chunks: a secret split across two chunks must not slip through.

    Whole lines are released and masked together; a line longer than `max_hold` is released early, all
    but a tail that may hold the start of a known secret.
    """

    def __init__(self, redactor: Redactor, max_hold: int = 8192):
        self.redactor = redactor
        self.max_hold = max_hold
        self._pending = ""

    def feed(self, chunk: str) -> str:
        """Take a chunk; return the masked text that is safe to show now (maybe empty)."""
        self._pending += chunk
        cut = self._pending.rfind("\n") + 1
        if not cut and len(self._pending) > self.max_hold:
            cut = self._safe_cut(self._pending)
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self.redactor.text(ready)

    def flush(self) -> str:
        """Return the masked rest once the stream has ended."""
        rest, self._pending = self._pending, ""
        return self.redactor.text(rest)

    def _safe_cut(self, text: str) -> int:
        # Hold back a tail for the pattern-based masks, and never cut where text ends in the start of a secret.
        cut = len(text) - 256
        while cut > 0:
            overlap = max((k for secret in self.redactor.secrets for k in range(1, min(len(secret), cut + 1))
                           if text[cut - k:cut] == secret[:k]), default=0)
            if not overlap:
                break
            cut -= overlap
        return max(cut, 0)
