"""One exception type per kind of user mistake.

The CLI turns any `NasforgeError` into a single line and a non-zero exit, so every message here
must stand on its own: it names the offending field and, where there is a finite set, the allowed
values. Each class also derives from the matching builtin so plain Python callers can catch
`ValueError`/`KeyError`/`FileNotFoundError` as they are used to.
"""

from __future__ import annotations

from collections.abc import Iterable


class NasforgeError(Exception):
    """Base class of every error a user can cause."""


class _FieldError(NasforgeError, ValueError):
    """'FIELD: PROBLEM (allowed: ...)': the shape of every message about one bad value."""

    def __init__(self, field: str, problem: str, allowed: Iterable[object] | str | None = None):
        self.field = field
        self.problem = problem
        self.allowed = allowed
        shown = str(field)
        message = f"{shown if shown.strip() else repr(shown)}: {problem}"  # a user's key may be ''
        if allowed is not None:
            message += f" (allowed: {format_allowed(allowed)})"
        super().__init__(message)


class ArchitectureError(_FieldError):
    """An architecture value (or its JSON) is malformed or outside its space."""


class ConfigError(_FieldError):
    """A configuration value (network, search, CLI) is invalid."""


class UnknownNameError(ConfigError, KeyError):
    """A name (model, op, space, strategy...) is not registered: the message gives the closest
    registered names first, then all of them."""

    def __init__(
        self,
        kind: str,
        name: object,
        suggestions: Iterable[str] = (),
        allowed: Iterable[object] | str | None = None,
        field: str | None = None,
    ):
        self.kind = kind
        self.name = name
        self.suggestions = list(suggestions)
        problem = f"unknown {kind} {name!r}"
        if self.suggestions:
            problem += f"; did you mean: {', '.join(self.suggestions)}?"
        super().__init__(field or kind, problem, allowed)

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0])


def format_allowed(allowed: Iterable[object] | str) -> str:
    if isinstance(allowed, str):
        return allowed
    values = list(allowed)
    if len(values) > 16:
        return ", ".join(map(str, values[:16])) + f", ... ({len(values)} in all)"
    return ", ".join(map(str, values))


class DatasetError(NasforgeError, ValueError):
    """A dataset is missing, unreadable or inconsistent; the message names the file."""

    def __init__(self, source: str, problem: str):
        self.source = source
        super().__init__(f"{source}: {problem}")
