"""User-facing errors. Every one carries a source position and renders as

    file.eqn:LINE:COL: error: message
        the offending line
        ^^^^

One class per kind of mistake; `ErrorList` carries all the errors found in one pass.
"""

from __future__ import annotations

from .ast import Span


class EqnError(Exception):
    """A mistake in a `.eqn` file, located in its source."""

    def __init__(self, message: str, span: Span | None = None, *, filename: str = "<string>",
                 source: str = "", severity: str = "error"):
        super().__init__(message)
        self.message = message
        self.severity = severity
        self.span = span or Span.unknown()
        self.filename = filename
        self.source = source

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    def located(self, filename: str, source: str) -> "EqnError":
        self.filename, self.source = filename, source
        return self

    def render(self) -> str:
        head = f"{self.filename}:{self.span.line}:{self.span.column}: {self.severity}: {self.message}"
        lines = self.source.splitlines()
        if not 1 <= self.span.line <= len(lines):
            return head
        text = lines[self.span.line - 1].expandtabs(1)
        start = self.span.column - 1
        if self.span.end_line == self.span.line and self.span.end_column > self.span.column:
            width = self.span.end_column - self.span.column
        else:
            width = 1
        width = max(1, min(width, max(1, len(text) - start)))
        return f"{head}\n    {text}\n    {' ' * start}{'^' * width}"

    def __str__(self) -> str:
        return self.render()


class EqnSyntaxError(EqnError):
    """The text does not follow the grammar (or is not text at all)."""


class EqnNameError(EqnError):
    """An undefined, duplicate, misplaced or unused name."""


class EqnShapeError(EqnError):
    """Operand shapes that do not fit the operation."""


class EqnFormError(EqnError):
    """Dynamics that are inconsistent: mixed forms, missing dynamics or output, bad cost."""


class EqnConstError(EqnError):
    """A constant that is not a number, is recursive, or has a bad override."""


class EqnHolomorphyError(EqnError):
    """A non-holomorphic operation where holomorphy is required."""


class EqnFunctionError(EqnError):
    """A call to a function with wrong arguments, or a recursive definition."""


class EqnWarning(EqnError):
    """Something legal but probably unintended (an unused name); never stops compilation."""

    def __init__(self, message: str, span: Span | None = None, **kwargs):
        super().__init__(message, span, severity="warning", **kwargs)


class ErrorList(Exception):
    """All the errors found in one file, in source order."""

    def __init__(self, errors: list[EqnError]):
        self.errors = sorted(errors, key=lambda e: (e.span.line, e.span.column))
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(error.render() for error in self.errors)

    def __str__(self) -> str:
        return self.render()
