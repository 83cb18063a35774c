"""The one matcher helper: a match function that runs only where a structural pattern holds.

Most match functions open the same way — find a form (``from(y)`` on the first operand, a
``to`` conversion, an op of some kind), skip the candidate when it is not there, unpack what
was found. ``requires`` says that once:

    @requires(from_operand)               # from_operand(node) → (y, r) or None
    def _match_slice(node, y, r): …       # called only when the form is there

    @requires(from_operand, decline="input is not in a channels-first layout region")
    def _match_norm(node, y, r): …        # the candidate is declined, with that reason, when not

A pattern returns None (not there), a tuple (its parts, passed as positional arguments) or one
value (passed as one argument).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from torch.fx import Node

from .rules import MatchResult


def requires(pattern: Callable[[Node], Any], decline: str | None = None):
    """Decorate ``match(node, *found)`` so that it runs only where ``pattern(node)`` finds its
    form; elsewhere the candidate is skipped, or declined with ``decline`` as the reason."""
    def wrap(match: Callable[..., MatchResult]) -> Callable[[Node], MatchResult]:
        @functools.wraps(match)
        def run(node: Node) -> MatchResult:
            found = pattern(node)
            if found is None:
                return MatchResult.fail(decline) if decline else MatchResult.skip()
            return match(node, *found) if isinstance(found, tuple) else match(node, found)
        return run
    return wrap

