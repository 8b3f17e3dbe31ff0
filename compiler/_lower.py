"""Lowering: AST expressions → typed IR, with names resolved and shapes checked.

Each expression is lowered to the IR exactly once; a sub-expression that fails yields `None`,
and its parents stay silent, so one mistake gives one message. A library call is checked and
built by its operation's record (`Signature`).
"""

from __future__ import annotations

import math

from ..dsl import ast
from ..dsl.errors import EqnConstError, EqnFormError, EqnFunctionError, EqnNameError, EqnShapeError
from . import _algebra as alg
from . import _functions
from ._constants import const, const_expr, int_const
from ._context import Context, Scope, a, fmt, suggest
from ._derive import BETA, gradient, vjp
from ._ir import (
    OPERATIONS, Const, Node, Op, ShapeMismatch, Var, elementwise_throughout, fmt_shape, op, substitute, zeros,
)
from ._ir import const as constant
from ._library import library, library_names
from ._program import NonHolomorphic
from ._tensor_ops import derivative_call

_BINARY = {"+": alg.add, "-": alg.sub, "*": alg.mul, "/": alg.div, "^": alg.power, "@": alg.matmul, ".": alg.dot}


def lower(ctx: Context, e: ast.Expr, scope: Scope) -> Node | None:
    """The IR of `e` in `scope`, or None after reporting what is wrong."""
    try:
        return _lower(ctx, e, scope)
    except ShapeMismatch as exc:
        ctx.error(EqnShapeError, str(exc), e.span)
        return None


def _lower(ctx: Context, e: ast.Expr, scope: Scope) -> Node | None:
    if isinstance(e, ast.Number):
        return Const((), e.span, value=e.value)
    if isinstance(e, ast.Name):
        node = resolve(ctx, e, scope)
        if isinstance(node, Op) and node.op == "named" and node.attr("name") in ctx.lowered.lets_with_beta:
            if scope.where == "cost":
                ctx.error(EqnFormError, f"'beta' cannot appear in the cost, but the let '{e.id}' uses it; "
                          "the nudge belongs to the dynamics", e.span)
                return None
            scope.uses_beta.append(e.span)
        return node
    if isinstance(e, ast.Beta):
        if scope.where in ("cost", "tie", "fn"):
            where = {"cost": "the cost", "tie": "a tie", "fn": "a function body"}[scope.where]
            ctx.error(EqnFormError, f"'beta' cannot appear in {where}; the nudge belongs to the dynamics", e.span)
            return None
        scope.uses_beta.append(e.span)
        return BETA
    if isinstance(e, (ast.Neg, ast.Transpose)):
        operand = lower(ctx, e.operand, scope)
        build = alg.neg if isinstance(e, ast.Neg) else alg.transpose
        return None if operand is None else build(operand, e.span)
    if isinstance(e, ast.BinOp):
        return _binary(ctx, e, scope)
    if isinstance(e, ast.Call):
        return call(ctx, e, scope)
    raise AssertionError(f"unhandled expression {e!r}")


def _binary(ctx: Context, e: ast.BinOp, scope: Scope) -> Node | None:
    left, right = lower(ctx, e.left, scope), lower(ctx, e.right, scope)
    if left is None or right is None:
        return None
    try:
        node = _BINARY[e.op](left, right, e.span)
    except ShapeMismatch as exc:
        ctx.error(EqnShapeError, str(exc), e.span)
        return None
    except (ArithmeticError, TypeError):  # folding two constants: overflow, 0^-1, complex
        if not (isinstance(left, Const) and isinstance(right, Const)):
            raise
        node = constant(math.inf)
    if isinstance(node, Const) and not math.isfinite(node.value):
        ctx.error(EqnConstError, "constant expression has no finite real value", e.span)
        return None
    return node


# ----------------------------------------------------------------------------- names


def resolve(ctx: Context, e: ast.Name, scope: Scope) -> Node | None:
    """What a name refers to in `scope`: a local, a constant, a leaf, a tie or a let."""
    name, decls = e.id, ctx.decls
    if name in scope.locals:
        return scope.locals[name]
    if name in decls.consts:
        ctx.used.add(name)
        value = const(ctx, name)
        return None if value is None else Const((), e.span, value=value)
    if scope.where == "fn":
        if name in decls.names:
            ctx.error(EqnNameError, f"a function body may use only its parameters and constants, "
                      f"not the {decls.names[name][0]} '{name}'", e.span)
        else:
            ctx.error(EqnNameError, f"undefined name '{name}'{suggest(name, scope.locals)}", e.span)
        return None
    if name in ctx.leaves:
        kind = ctx.leaves[name].kind
        if scope.where == "tie" and kind != "param":
            ctx.error(EqnNameError, f"a tie may read only parameters and constants, not the {kind} '{name}'", e.span)
            return None
        ctx.used.add(name)
        return tie(ctx, name) if kind == "param" and name in decls.ties else ctx.leaves[name]
    if name in decls.lets:
        if scope.where == "tie":
            ctx.error(EqnNameError, f"a tie may read only parameters and constants, not the let '{name}'", e.span)
            return None
        ctx.used.add(name)
        return let(ctx, name)
    if name in decls.functions or name in library_names():
        ctx.error(EqnNameError, f"'{name}' is a function; call it as {name}(…)", e.span)
        return None
    if name in decls.variables:
        return None  # its declaration already failed and was reported
    candidates = list(decls.names) + list(scope.locals)
    ctx.error(EqnNameError, f"undefined name '{name}'{suggest(name, candidates)}", e.span)
    return None


def let(ctx: Context, name: str) -> Node | None:
    """The `named` node of a let (or coordinate), lowered on first use."""
    decl = ctx.decls.lets[name]
    return _lazy(ctx, "let", name, decl.value, decl.name_span, Scope("dynamics"), ctx.lowered.lets)


def tie(ctx: Context, name: str) -> Node | None:
    """The `named` node of a tied parameter's expression, lowered on first use."""
    decl = ctx.decls.ties[name]
    return _lazy(ctx, "tie", name, decl.value, decl.name_span, Scope("tie"), ctx.lowered.ties)


def _lazy(ctx: Context, kind: str, name: str, expr: ast.Expr, span, scope: Scope, values: dict) -> Node | None:
    progress = ctx.lowered.progress
    if name in values:
        return values[name]
    if progress.get((kind, name)) == "active":
        ctx.error(EqnNameError, f"{kind} '{name}' is defined in terms of itself", span)
        progress[(kind, name)] = "failed"
        return None
    if progress.get((kind, name)) == "failed":
        return None
    progress[(kind, name)] = "active"
    body = lower(ctx, expr, scope)
    if progress.get((kind, name)) == "failed" or body is None:
        progress[(kind, name)] = "failed"
        return None
    if scope.uses_beta:
        ctx.lowered.lets_with_beta.setdefault(name, scope.uses_beta[0])
    values[name] = node = op("named", (body,), body.shape, (("name", name),), span=span)
    progress[(kind, name)] = "done"
    return node


# ----------------------------------------------------------------------------- calls


def call(ctx: Context, e: ast.Call, scope: Scope) -> Node | None:
    """A call to `grad`, a user function, a library function or a registered Python function."""
    name = e.func
    if name == "grad":
        return _grad(ctx, e, scope)
    if name in ctx.decls.functions:
        ctx.used.add(name)
        return _user_call(ctx, e, scope)
    python = _functions.lookup(name)
    record = library().get(name)
    if record is None and python is None:
        if name in ctx.decls.names:
            ctx.error(EqnFunctionError, f"'{name}' is {a(ctx.decls.names[name][0])}, not a function", e.func_span)
        else:
            known = list(ctx.decls.functions) + sorted(library_names())
            ctx.error(EqnNameError, f"unknown function '{name}'{suggest(name, known)}", e.func_span)
        for arg in e.args:
            lower(ctx, arg, scope)
        return None
    args = [lower(ctx, arg, scope) for arg in e.args]
    if any(arg is None for arg in args):
        return None
    elementwise_python = python is not None and python.elementwise
    if python is not None:
        record = OPERATIONS[python.op_name]
    if not record.holomorphic:
        ctx.lowered.non_holomorphic.setdefault((name, e.span.line, e.span.column), NonHolomorphic(name, e.span))
    if record.elementwise and python is None:
        return elementwise_derivative(name, args[0], e.primes, e.span) if _arity(ctx, e, 1) else None
    if e.primes and elementwise_python:
        return _functions.derivative_node(python, args[0], e.primes, e.span) if _arity(ctx, e, 1) else None
    if e.primes:
        ctx.error(EqnFunctionError, f"'{name}' is not an elementwise function of one argument, so {name}' "
                  "is not defined", e.func_span)
        return None
    if python is not None and e.keywords:
        ctx.error(EqnFunctionError, f"Python function '{python.name}' takes no keywords", e.keywords[0].span)
        return None
    signature = record.signature
    if signature.arity is not None and not _arity(ctx, e, signature.arity, tuple(k.name for k in signature.keywords)):
        return None
    keywords = _keywords(ctx, e, signature.keywords)
    if keywords is None:
        return None
    try:
        return signature.build(args, keywords, e.span)
    except ShapeMismatch as exc:
        ctx.error(EqnShapeError, str(exc), e.span if exc.argument is None else e.args[exc.argument].span)
        return None


def _arity(ctx: Context, e: ast.Call, count: int, keywords: tuple[str, ...] = ()) -> bool:
    ok = True
    if len(e.args) != count:
        ctx.error(EqnFunctionError, f"'{e.func}' takes {count} argument{'s' if count != 1 else ''}, "
                  f"got {len(e.args)}", e.span)
        ok = False
    for kw in e.keywords:
        if kw.name not in keywords:
            allowed = f" (allowed: {', '.join(keywords)})" if keywords else ""
            ctx.error(EqnFunctionError, f"'{e.func}' has no keyword '{kw.name}'{allowed}", kw.span)
            ok = False
    return ok


def _keywords(ctx: Context, e: ast.Call, declared) -> dict | None:
    """The values of a call's keywords, from the call or their defaults (None if one is wrong)."""
    given = {kw.name: kw.value for kw in e.keywords}
    values: dict = {}
    for keyword in declared:
        if keyword.name not in given:
            default = keyword.default
            values[keyword.name] = values.get(default) if isinstance(default, str) else default
            continue
        expr = given[keyword.name]
        what = f"'{keyword.name}' of {e.func}"
        if keyword.kind == "positive number":
            value = const_expr(ctx, expr)
            if value is not None and value <= 0:
                ctx.error(EqnConstError, f"{what} must be positive, got {fmt(value)}", expr.span)
                value = None
        else:
            value = int_const(ctx, expr, what, 0 if keyword.kind == "non-negative integer" else 1)
        values[keyword.name] = value
    return None if any(v is None for v in values.values()) else values


def _grad(ctx: Context, e: ast.Call, scope: Scope) -> Node | None:
    if not _arity(ctx, e, 2) or e.primes:
        if e.primes:
            ctx.error(EqnFunctionError, "grad' is not defined; nest grad(…) instead", e.func_span)
        return None
    wrt = e.args[1]
    if not isinstance(wrt, ast.Name):
        ctx.error(EqnFunctionError, "the second argument of grad must be the name of a state, input, "
                  "parameter or let", wrt.span)
        return None
    target = lower(ctx, wrt, scope)
    body = lower(ctx, e.args[0], scope)
    if target is None or body is None:
        return None
    if body.shape != ():
        ctx.error(EqnShapeError, f"grad needs a scalar expression, got shape {fmt_shape(body.shape)}", e.args[0].span)
        return None
    if isinstance(target, Var):
        key = target.name
    elif isinstance(target, Op) and target.op == "named":
        key = target.attr("name")
    else:
        ctx.error(EqnFunctionError, f"cannot differentiate with respect to '{wrt.id}'", wrt.span)
        return None
    return vjp(body, {key}, constant(1.0)).get(key, zeros(target.shape))


def _user_call(ctx: Context, e: ast.Call, scope: Scope) -> Node | None:
    fn = ctx.decls.functions[e.func]
    if e.keywords:
        ctx.error(EqnFunctionError, f"'{fn.name}' takes no keywords", e.keywords[0].span)
        return None
    if len(e.args) != len(fn.params):
        ctx.error(EqnFunctionError, f"'{fn.name}' takes {len(fn.params)} argument"
                  f"{'s' if len(fn.params) != 1 else ''}, got {len(e.args)}", e.span)
        return None
    args = [lower(ctx, arg, scope) for arg in e.args]
    if any(arg is None for arg in args) or not check_function(ctx, fn):
        return None
    body = ctx.lowered.function_bodies.get(fn.name)
    if body is not None:
        node: Node = op("call", (args[0],), args[0].shape,
                        (("name", fn.name), ("primes", 0), ("param", fn.params[0]), ("body", body)), e.span)
        for _ in range(e.primes):
            node = derivative_call(node)
        return node
    if e.primes:
        ctx.error(EqnFunctionError, f"'{fn.name}' is not an elementwise function of one argument, so {fn.name}' "
                  "is not defined", e.func_span)
        return None
    return lower(ctx, fn.body, Scope("fn", dict(zip(fn.params, args))))


def check_function(ctx: Context, fn: ast.FnDecl) -> bool:
    """Check a definition once and classify it. A one-argument function whose body maps a vector
    to a vector through elementwise operations only is elementwise: it is kept as a call (printed
    `rho(h)`, differentiable as `rho'(h)`) with its body on a scalar. Any other function is
    inlined at each call with the arguments' real shapes."""
    progress = ctx.lowered.progress
    state = progress.get(("fn", fn.name))
    if state == "done":
        return True
    if state == "active":
        ctx.error(EqnFunctionError, f"function '{fn.name}' calls itself; recursion is not supported", fn.name_span)
        progress[("fn", fn.name)] = "failed"
        return False
    if state == "failed":
        return False
    progress[("fn", fn.name)] = "active"
    kept, ctx.errors = ctx.errors, []
    probe = lower(ctx, fn.body, Scope("fn", {p: Var((3,), fn.name_span, name=p, kind="local") for p in fn.params}))
    probe_errors, ctx.errors = ctx.errors, kept
    # shapes depend on the arguments, so only errors about names and definitions count here
    ctx.errors.extend(error for error in probe_errors if not isinstance(error, EqnShapeError))
    if progress.get(("fn", fn.name)) == "failed" or any(not isinstance(e, EqnShapeError) for e in probe_errors):
        progress[("fn", fn.name)] = "failed"
        return False
    if len(fn.params) == 1 and probe is not None and probe.shape == (3,) and elementwise_throughout(probe):
        body = lower(ctx, fn.body, Scope("fn", {p: Var((), fn.name_span, name=p, kind="local") for p in fn.params}))
        if body is None:
            progress[("fn", fn.name)] = "failed"
            return False
        ctx.lowered.function_bodies[fn.name] = body
    progress[("fn", fn.name)] = "done"
    return True


def elementwise_derivative(name: str, arg: Node, primes: int, span) -> Node:
    """f^(k)(arg) for a library elementwise function, derived symbolically."""
    if primes == 0:
        return alg.unary(name, arg, span)
    placeholder = Var((), span, name="_u", kind="local")
    expression: Node = alg.unary(name, placeholder, span)
    for _ in range(primes):
        expression = gradient(expression, "_u", ())
    return alg.broadcast(substitute(expression, {"_u": arg}), arg.shape)
