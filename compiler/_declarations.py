"""The first passes: every statement sorted by kind with its name declared once, then the shapes
of inputs, targets, states and parameters, and the parameters' initialisers."""

from __future__ import annotations

from ..dsl import ast
from ..dsl.errors import EqnFormError, EqnFunctionError, EqnNameError, EqnShapeError
from . import _functions
from ._constants import const_expr, int_const
from ._context import Context, a, suggest
from ._ir import Var, fmt_shape
from ._library import library_names
from ._program import ParamSpec

INITIALIZERS = {  # name → (fewest, most) arguments
    "glorot": (0, 1), "glorot_normal": (0, 1), "he": (0, 1), "lecun": (0, 1), "orthogonal": (0, 1),
    "zeros": (0, 0), "ones": (0, 0), "normal": (1, 1), "uniform": (1, 2), "constant": (1, 1),
}
MATRIX_INITIALIZERS = ("glorot", "glorot_normal", "he", "lecun", "orthogonal")


def collect(ctx: Context) -> None:
    """Sort the statements by kind and declare each name once."""
    d = ctx.decls
    library = library_names()
    by_kind = {ast.PairDecl: d.pairs, ast.EnergyDecl: d.energies, ast.CostDecl: d.costs,
               ast.PredictDecl: d.predicts, ast.FlowEq: d.flows, ast.MapEq: d.maps}
    for s in ctx.module.statements:
        if isinstance(s, ast.ModelDecl):
            if d.model is not None:
                ctx.error(EqnNameError, f"a second 'model' line (the first is at line {d.model.span.line})", s.span)
            else:
                d.model = s
        elif isinstance(s, ast.ConstDecl):
            if declare(ctx, s.name, "constant", s.span):
                d.consts[s.name] = s
        elif isinstance(s, ast.VarDecl):
            if declare(ctx, s.name, s.kind, s.name_span):
                d.variables[s.name] = s
        elif isinstance(s, ast.FnDecl):
            if s.name in library:
                ctx.error(EqnNameError, f"'{s.name}' is a built-in function; choose another name", s.name_span)
            elif _functions.lookup(s.name) is not None:
                ctx.error(EqnNameError, f"'{s.name}' is a registered Python function; choose another name", s.name_span)
            elif declare(ctx, s.name, "function", s.name_span):
                d.functions[s.name] = s
                if len(set(s.params)) != len(s.params):
                    ctx.error(EqnNameError, f"function '{s.name}' repeats a parameter name", s.span)
        elif isinstance(s, ast.LetDecl):
            if declare(ctx, s.name, "let", s.name_span):
                d.lets[s.name] = s
        elif isinstance(s, ast.CoordinateDecl):
            if declare(ctx, s.name, "coordinate", s.name_span):
                d.lets[s.name] = s
                d.coordinates[s.name] = s
        elif isinstance(s, ast.TieDecl):
            if s.name in d.ties:
                ctx.error(EqnNameError, f"'{s.name}' is tied twice (first at line {d.ties[s.name].span.line})",
                          s.name_span)
            else:
                d.ties[s.name] = s
        else:
            by_kind[type(s)].append(s)


def declare(ctx: Context, name: str, kind: str, span: ast.Span) -> bool:
    """Declare `name` as `kind`; False (reported) if the name is taken."""
    library = library_names()
    if kind != "function" and (name in library or _functions.lookup(name) is not None):
        # `param exp` would leave `exp(u)` the library's and `exp` alone the param: refuse it
        what = "built-in" if name in library else "registered Python"
        ctx.error(EqnNameError, f"'{name}' is a {what} function; choose another name for this {kind}", span)
        return False
    names = ctx.decls.names
    if name in names:
        first_kind, first = names[name]
        ctx.error(EqnNameError, f"'{name}' is already declared as {a(first_kind)} at line {first.line}", span)
        return False
    names[name] = (kind, span)
    return True


def declare_variables(ctx: Context) -> None:
    """Shapes of every input, target, state and parameter; the output state; parameter specs."""
    variables = ctx.decls.variables
    outputs: list[ast.VarDecl] = []
    for name, d in variables.items():
        dims = [int_const(ctx, e, "a shape dimension") for e in d.shape]
        if any(x is None for x in dims):
            continue
        shape = tuple(dims)
        if d.kind == "state" and d.output:
            outputs.append(d)
        if d.kind == "param":
            ctx.params[name] = _param_spec(ctx, d, shape)
        kinds = {"input": ctx.inputs, "target": ctx.targets, "state": ctx.states}
        if d.kind in kinds:
            kinds[d.kind][name] = shape
        ctx.leaves[name] = Var(shape, d.name_span, name=name, kind=d.kind)
    ctx.output = outputs[0].name if outputs else None
    for extra in outputs[1:]:
        ctx.error(EqnFormError, f"only one state may be marked output ('{ctx.output}' already is)", extra.span)
    states = [d for d in variables.values() if d.kind == "state"]
    if not outputs and states and not any(d.output for d in states):
        ctx.error(EqnFormError, "no state is marked output; mark one, e.g. 'state o[10] output'", states[0].span)


def _param_spec(ctx: Context, d: ast.VarDecl, shape) -> ParamSpec:
    init, args = "glorot" if len(shape) >= 2 else "zeros", ()
    if d.init is not None:
        if d.init.name not in INITIALIZERS:
            ctx.error(EqnNameError, f"unknown initialiser '{d.init.name}'{suggest(d.init.name, INITIALIZERS)} "
                      f"(known: {', '.join(sorted(INITIALIZERS))})", d.init.span)
        else:
            low, high = INITIALIZERS[d.init.name]
            if not low <= len(d.init.args) <= high:
                count = str(low) if low == high else f"{low} or {high}"
                ctx.error(EqnFunctionError, f"initialiser '{d.init.name}' takes {count} argument(s), "
                          f"got {len(d.init.args)}", d.init.span)
            else:
                init = d.init.name
                values = [const_expr(ctx, arg) for arg in d.init.args]
                args = tuple(v for v in values if v is not None)
        if init in MATRIX_INITIALIZERS and len(shape) < 2:
            ctx.error(EqnShapeError, f"initialiser '{init}' needs a matrix or kernel, but '{d.name}' has shape "
                      f"{fmt_shape(shape)}", d.init.span)
    return ParamSpec(d.name, shape, init, args, d.name_span)
