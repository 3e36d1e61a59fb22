"""Collecting the tokens a sampler hands to ``on_token`` in tests."""

from __future__ import annotations

from ambient.sampling.base import Token


class TokenLog:
    """An ``on_token`` callback that keeps every ``(branch, token)`` call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, Token]] = []

    def __call__(self, branch: int, token: Token) -> None:
        self.calls.append((branch, token))

    def of(self, branch: int) -> list[Token]:
        """The tokens streamed for ``branch``, in order."""
        return [t for b, t in self.calls if b == branch]
