"""Constants: the values of `const` declarations (with the caller's overrides), and constant
expressions wherever the language wants a number at compile time (shapes, keywords,
initialiser arguments)."""

from __future__ import annotations

import math

from ..dsl import ast
from ..dsl.errors import EqnConstError, EqnNameError
from ._context import Context, a, fmt, suggest


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def evaluate_consts(ctx: Context) -> None:
    """Check the overrides against the declarations, then evaluate every constant."""
    decls = ctx.decls.consts
    for name, value in ctx.const_overrides.items():
        if name not in decls:
            known = ", ".join(decls) or "none"
            ctx.error(EqnConstError, f"cannot override constant '{name}': the model declares no such "
                      f"constant (constants: {known})", ctx.model_span())
        elif not _is_number(value):
            ctx.error(EqnConstError, f"override for constant '{name}' must be a number, got {value!r}",
                      decls[name].span)
    for name in decls:
        const(ctx, name)


def const(ctx: Context, name: str) -> float | None:
    """The value of the constant `name` (None, reported, if it has none)."""
    if name in ctx.consts:
        return ctx.consts[name]
    decl = ctx.decls.consts[name]
    progress = ctx.const_progress.get(name)
    if progress == "active":
        ctx.error(EqnConstError, f"constant '{name}' is defined in terms of itself", decl.span)
        return None
    if progress == "failed":
        return None
    ctx.const_progress[name] = "active"
    override = ctx.const_overrides.get(name)
    value = float(override) if _is_number(override) else const_expr(ctx, decl.value)
    if value is None:
        ctx.const_progress[name] = "failed"
        return None
    ctx.const_progress[name] = "done"
    ctx.consts[name] = value
    return value


def const_expr(ctx: Context, e: ast.Expr) -> float | None:
    """The value of a constant expression: numbers, constants and + - * / ^."""
    if isinstance(e, ast.Number):
        return e.value
    if isinstance(e, ast.Name):
        if e.id in ctx.decls.consts:
            ctx.used.add(e.id)
            return const(ctx, e.id)
        if e.id in ctx.decls.names:
            kind = ctx.decls.names[e.id][0]
            ctx.error(EqnConstError, f"'{e.id}' is {a(kind)}; a constant expression may use only "
                      f"numbers and other constants", e.span)
        else:
            ctx.error(EqnNameError, f"undefined constant '{e.id}'{suggest(e.id, ctx.decls.consts)}", e.span)
        return None
    if isinstance(e, ast.Neg):
        v = const_expr(ctx, e.operand)
        return None if v is None else -v
    if isinstance(e, ast.BinOp) and e.op in "+-*/^":
        left, right = const_expr(ctx, e.left), const_expr(ctx, e.right)
        if left is None or right is None:
            return None
        try:
            value = {"+": left + right, "-": left - right, "*": left * right}[e.op] if e.op in "+-*" else (
                left / right if e.op == "/" else float(left**right))
        except (ZeroDivisionError, OverflowError, TypeError):
            value = math.inf
        if not math.isfinite(value):
            ctx.error(EqnConstError, "constant expression has no finite real value", e.span)
            return None
        return value
    ctx.error(EqnConstError, "a constant expression may use only numbers, constants and + - * / ^", e.span)
    return None


def int_const(ctx: Context, e: ast.Expr, what: str, minimum: int = 1) -> int | None:
    """A constant expression that must be an integer ≥ `minimum` (1 or 0), `what` naming it."""
    value = const_expr(ctx, e)
    if value is None:
        return None
    if value != int(value) or value < minimum:
        bound = "positive" if minimum == 1 else "non-negative"
        ctx.error(EqnConstError, f"{what} must be a {bound} integer, got {fmt(value)}", e.span)
        return None
    return int(value)
