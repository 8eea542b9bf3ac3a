"""Matching coded values given as ``"system|code"`` tokens.

EHR data and clients sometimes omit the system (the IG's own examples do); a
token without a system is matched by code alone, on either side.
"""

from __future__ import annotations

from collections.abc import Iterable


class TokenSet:
    """A set of wanted tokens that answers "does this token match one of them?"."""

    __slots__ = ("_codes", "_full", "_systemless")

    def __init__(self, tokens: Iterable[str]):
        self._full: set[str] = set()
        self._codes: set[str] = set()
        self._systemless: set[str] = set()
        for token in tokens:
            system, _, code = token.rpartition("|")
            self._full.add(token)
            self._codes.add(code)
            if not system:
                self._systemless.add(code)

    def __bool__(self) -> bool:
        return bool(self._full)

    def matches(self, token: str) -> bool:
        if token in self._full:
            return True
        system, _, code = token.rpartition("|")
        if not system:
            return code in self._codes
        return code in self._systemless

    def any_of(self, tokens: Iterable[str]) -> bool:
        return any(self.matches(t) for t in tokens)
