"""The `.eqn` language: grammar, parser and AST. Pure Python; imports no JAX."""

from . import ast
from ._parser import parse, parse_file
from .errors import (
    EqnConstError,
    EqnError,
    EqnFormError,
    EqnFunctionError,
    EqnHolomorphyError,
    EqnNameError,
    EqnShapeError,
    EqnSyntaxError,
    EqnWarning,
    ErrorList,
)

__all__ = [
    "ast", "parse", "parse_file", "EqnError", "EqnSyntaxError", "EqnNameError", "EqnShapeError",
    "EqnFormError", "EqnConstError", "EqnHolomorphyError", "EqnFunctionError", "ErrorList",
    "EqnWarning",
]
