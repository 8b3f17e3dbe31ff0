"""AST → Program: name resolution, constant evaluation, shape inference, form checks and
holomorphy classification, with every error of a file collected in one pass.

Each expression is lowered to the IR exactly once; a sub-expression that fails yields `None`,
and its parents stay silent, so one mistake gives one message.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

from ..dsl import ast
from ..dsl.errors import (
    EqnConstError, EqnError, EqnFormError, EqnFunctionError, EqnHolomorphyError, EqnNameError,
    EqnShapeError, EqnWarning, ErrorList,
)
from . import _functions, _ir
from ._derive import BETA, derive_rules, energy_flow, gradient, nudge_terms, sweep_blocks, vjp
from ._ir import OPS, Node, Op, ShapeMismatch, Var, fmt_shape
from ._library import ELEMENTWISE_FUNCTIONS, derivative_call
from ._program import Coordinate, NonHolomorphic, ParamSpec, Program

INITIALIZERS = {
    "glorot": (0, 1), "glorot_normal": (0, 1), "he": (0, 1), "lecun": (0, 1), "orthogonal": (0, 1),
    "zeros": (0, 0), "ones": (0, 0), "normal": (1, 1), "uniform": (1, 2), "constant": (1, 1),
}

STRUCTURAL_FUNCTIONS = {
    "sum", "mean", "softmax", "logsumexp", "dot", "outer", "transpose", "flatten",
    "conv", "conv_transpose", "softpool", "grad",
}
LIBRARY = set(ELEMENTWISE_FUNCTIONS) | STRUCTURAL_FUNCTIONS


@dataclass
class _Scope:
    """What a name may refer to where an expression is being lowered."""

    where: str  # "dynamics", "cost", "tie", "fn", "shape"
    locals: dict[str, Node] = field(default_factory=dict)
    uses_beta: list[ast.Span] = field(default_factory=list)


class _Checker:
    def __init__(self, module: ast.Module, consts: dict | None, holomorphic: bool):
        self.module = module
        self.errors: list[EqnError] = []
        self.warnings: list[EqnError] = []
        self.const_overrides = dict(consts or {})
        self.require_holomorphic = holomorphic
        self.used: set[str] = set()

    # ------------------------------------------------------------------ reporting
    def error(self, cls, message: str, span: ast.Span | None):
        span = span or ast.Span.unknown()
        key = (cls, message, span.line, span.column)
        if all((type(e), e.message, e.span.line, e.span.column) != key for e in self.errors):
            self.errors.append(cls(message, span))

    def warn(self, message: str, span: ast.Span):
        self.warnings.append(EqnWarning(message, span))

    def _suggest(self, name: str, candidates) -> str:
        close = difflib.get_close_matches(name, list(candidates), n=1)
        return f"; did you mean '{close[0]}'?" if close else ""

    # ------------------------------------------------------------------ pass 1: declarations
    def collect(self):
        self.model_decl: ast.ModelDecl | None = None
        self.declared: dict[str, tuple[str, ast.Span]] = {}
        self.const_decls: dict[str, ast.ConstDecl] = {}
        self.var_decls: dict[str, ast.VarDecl] = {}
        self.fn_decls: dict[str, ast.FnDecl] = {}
        self.let_decls: dict[str, ast.LetDecl | ast.CoordinateDecl] = {}
        self.coordinate_decls: dict[str, ast.CoordinateDecl] = {}
        self.tie_decls: dict[str, ast.TieDecl] = {}
        self.pair_decls: list[ast.PairDecl] = []
        self.energies: list[ast.EnergyDecl] = []
        self.costs: list[ast.CostDecl] = []
        self.predicts: list[ast.PredictDecl] = []
        self.flows: list[ast.FlowEq] = []
        self.maps: list[ast.MapEq] = []
        for s in self.module.statements:
            if isinstance(s, ast.ModelDecl):
                if self.model_decl is not None:
                    self.error(EqnNameError, f"a second 'model' line (the first is at line {self.model_decl.span.line})", s.span)
                else:
                    self.model_decl = s
            elif isinstance(s, ast.ConstDecl):
                if self._declare(s.name, "constant", s.span):
                    self.const_decls[s.name] = s
            elif isinstance(s, ast.VarDecl):
                if self._declare(s.name, s.kind, s.name_span):
                    self.var_decls[s.name] = s
            elif isinstance(s, ast.FnDecl):
                if s.name in LIBRARY:
                    self.error(EqnNameError, f"'{s.name}' is a built-in function; choose another name", s.name_span)
                elif _functions.lookup(s.name) is not None:
                    self.error(EqnNameError, f"'{s.name}' is a registered Python function; choose another name", s.name_span)
                elif self._declare(s.name, "function", s.name_span):
                    self.fn_decls[s.name] = s
                    if len(set(s.params)) != len(s.params):
                        self.error(EqnNameError, f"function '{s.name}' repeats a parameter name", s.span)
            elif isinstance(s, ast.LetDecl):
                if self._declare(s.name, "let", s.name_span):
                    self.let_decls[s.name] = s
            elif isinstance(s, ast.CoordinateDecl):
                if self._declare(s.name, "coordinate", s.name_span):
                    self.let_decls[s.name] = s
                    self.coordinate_decls[s.name] = s
            elif isinstance(s, ast.TieDecl):
                if s.name in self.tie_decls:
                    self.error(EqnNameError, f"'{s.name}' is tied twice (first at line {self.tie_decls[s.name].span.line})", s.name_span)
                else:
                    self.tie_decls[s.name] = s
            elif isinstance(s, ast.PairDecl):
                self.pair_decls.append(s)
            elif isinstance(s, ast.EnergyDecl):
                self.energies.append(s)
            elif isinstance(s, ast.CostDecl):
                self.costs.append(s)
            elif isinstance(s, ast.PredictDecl):
                self.predicts.append(s)
            elif isinstance(s, ast.FlowEq):
                self.flows.append(s)
            elif isinstance(s, ast.MapEq):
                self.maps.append(s)

    def _declare(self, name: str, kind: str, span: ast.Span) -> bool:
        if kind != "function" and (name in LIBRARY or _functions.lookup(name) is not None):
            # `param exp` would leave `exp(u)` the library's and `exp` alone the param: refuse it
            what = "built-in" if name in LIBRARY else "registered Python"
            self.error(EqnNameError, f"'{name}' is a {what} function; choose another name for this {kind}", span)
            return False
        if name in self.declared:
            first_kind, first = self.declared[name]
            self.error(EqnNameError, f"'{name}' is already declared as {_a(first_kind)} at line {first.line}", span)
            return False
        self.declared[name] = (kind, span)
        return True

    # ------------------------------------------------------------------ constants
    def evaluate_consts(self):
        self.consts: dict[str, float] = {}
        self._const_state: dict[str, str] = {}
        for name, value in self.const_overrides.items():
            if name not in self.const_decls:
                known = ", ".join(self.const_decls) or "none"
                span = self.model_decl.span if self.model_decl else ast.Span.unknown()
                self.error(EqnConstError, f"cannot override constant '{name}': the model declares no such "
                           f"constant (constants: {known})", span)
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                self.error(EqnConstError, f"override for constant '{name}' must be a number, got {value!r}",
                           self.const_decls[name].span)
        for name in self.const_decls:
            self._const(name)

    def _const(self, name: str) -> float | None:
        if name in self.consts:
            return self.consts[name]
        decl = self.const_decls[name]
        if self._const_state.get(name) == "active":
            self.error(EqnConstError, f"constant '{name}' is defined in terms of itself", decl.span)
            return None
        if self._const_state.get(name) == "failed":
            return None
        self._const_state[name] = "active"
        if name in self.const_overrides and isinstance(self.const_overrides[name], (int, float)) \
                and not isinstance(self.const_overrides[name], bool):
            value = float(self.const_overrides[name])
        else:
            value = self._const_expr(decl.value)
        if value is None:
            self._const_state[name] = "failed"
            return None
        self._const_state[name] = "done"
        self.consts[name] = value
        return value

    def _const_expr(self, e: ast.Expr) -> float | None:
        if isinstance(e, ast.Number):
            return e.value
        if isinstance(e, ast.Name):
            if e.id in self.const_decls:
                self.used.add(e.id)
                return self._const(e.id)
            if e.id in self.declared:
                kind = self.declared[e.id][0]
                self.error(EqnConstError, f"'{e.id}' is {_a(kind)}; a constant expression may use only "
                           f"numbers and other constants", e.span)
            else:
                self.error(EqnNameError, f"undefined constant '{e.id}'{self._suggest(e.id, self.const_decls)}", e.span)
            return None
        if isinstance(e, ast.Neg):
            v = self._const_expr(e.operand)
            return None if v is None else -v
        if isinstance(e, ast.BinOp) and e.op in "+-*/^":
            a, b = self._const_expr(e.left), self._const_expr(e.right)
            if a is None or b is None:
                return None
            try:
                value = {"+": a + b, "-": a - b, "*": a * b}[e.op] if e.op in "+-*" else (
                    a / b if e.op == "/" else float(a**b))
            except (ZeroDivisionError, OverflowError, TypeError):
                value = math.inf
            if not math.isfinite(value):
                self.error(EqnConstError, "constant expression has no finite real value", e.span)
                return None
            return value
        self.error(EqnConstError, "a constant expression may use only numbers, constants and + - * / ^", e.span)
        return None

    def _int_const(self, e: ast.Expr, what: str, minimum: int = 1) -> int | None:
        value = self._const_expr(e)
        if value is None:
            return None
        if value != int(value) or value < minimum:
            bound = "positive" if minimum == 1 else "non-negative"
            self.error(EqnConstError, f"{what} must be a {bound} integer, got {_fmt(value)}", e.span)
            return None
        return int(value)

    # ------------------------------------------------------------------ variables
    def declare_variables(self):
        self.shapes: dict[str, tuple] = {}
        self.inputs: dict[str, tuple] = {}
        self.targets: dict[str, tuple] = {}
        self.states: dict[str, tuple] = {}
        self.params: dict[str, ParamSpec] = {}
        self.leaves: dict[str, Node] = {}
        outputs: list[ast.VarDecl] = []
        for name, d in self.var_decls.items():
            dims = [self._int_const(e, "a shape dimension") for e in d.shape]
            if any(x is None for x in dims):
                continue
            shape = tuple(dims)
            self.shapes[name] = shape
            if d.kind == "state" and d.output:
                outputs.append(d)
            if d.kind == "param":
                self.params[name] = self._param_spec(d, shape)
            if d.kind == "input":
                self.inputs[name] = shape
            elif d.kind == "target":
                self.targets[name] = shape
            elif d.kind == "state":
                self.states[name] = shape
            self.leaves[name] = Var(shape, d.name_span, name=name, kind=d.kind)
        self.output = outputs[0].name if outputs else None
        for extra in outputs[1:]:
            self.error(EqnFormError, f"only one state may be marked output ('{self.output}' already is)", extra.span)
        if not outputs and any(d.kind == "state" for d in self.var_decls.values()) \
                and not any(d.kind == "state" and d.output for d in self.var_decls.values()):
            first_state = next(d for d in self.var_decls.values() if d.kind == "state")
            self.error(EqnFormError, "no state is marked output; mark one, e.g. 'state o[10] output'", first_state.span)

    def _param_spec(self, d: ast.VarDecl, shape) -> ParamSpec:
        init, args = "glorot" if len(shape) >= 2 else "zeros", ()
        if d.init is not None:
            if d.init.name not in INITIALIZERS:
                self.error(EqnNameError, f"unknown initialiser '{d.init.name}'"
                           f"{self._suggest(d.init.name, INITIALIZERS)} (known: {', '.join(sorted(INITIALIZERS))})",
                           d.init.span)
            else:
                low, high = INITIALIZERS[d.init.name]
                if not low <= len(d.init.args) <= high:
                    count = str(low) if low == high else f"{low} or {high}"
                    self.error(EqnFunctionError, f"initialiser '{d.init.name}' takes {count} argument(s), "
                               f"got {len(d.init.args)}", d.init.span)
                else:
                    init = d.init.name
                    values = [self._const_expr(a) for a in d.init.args]
                    args = tuple(v for v in values if v is not None)
            if init in ("glorot", "glorot_normal", "he", "lecun", "orthogonal") and len(shape) < 2:
                self.error(EqnShapeError, f"initialiser '{init}' needs a matrix or kernel, but '{d.name}' has shape "
                           f"{fmt_shape(shape)}", d.init.span)
        return ParamSpec(d.name, shape, init, args, d.name_span)

    # ------------------------------------------------------------------ name lookup
    def resolve(self, e: ast.Name, scope: _Scope) -> Node | None:
        name = e.id
        if name in scope.locals:
            return scope.locals[name]
        if name in self.const_decls:
            self.used.add(name)
            value = self._const(name)
            return None if value is None else _ir.Const((), e.span, value=value)
        if scope.where == "fn":
            if name in self.declared:
                self.error(EqnNameError, f"a function body may use only its parameters and constants, "
                           f"not the {self.declared[name][0]} '{name}'", e.span)
            else:
                self.error(EqnNameError, f"undefined name '{name}'{self._suggest(name, scope.locals)}", e.span)
            return None
        if name in self.leaves:
            kind = self.leaves[name].kind  # type: ignore[attr-defined]
            if scope.where == "tie" and kind != "param":
                self.error(EqnNameError, f"a tie may read only parameters and constants, not the {kind} '{name}'", e.span)
                return None
            self.used.add(name)
            if kind == "param" and name in self.tie_decls:
                return self.tie(name)
            return self.leaves[name]
        if name in self.let_decls:
            if scope.where == "tie":
                self.error(EqnNameError, f"a tie may read only parameters and constants, not the let '{name}'", e.span)
                return None
            self.used.add(name)
            return self.let(name)
        if name in self.fn_decls or name in LIBRARY:
            self.error(EqnNameError, f"'{name}' is a function; call it as {name}(…)", e.span)
            return None
        if name in self.var_decls:
            return None  # its declaration already failed and was reported
        candidates = list(self.declared) + list(scope.locals)
        self.error(EqnNameError, f"undefined name '{name}'{self._suggest(name, candidates)}", e.span)
        return None

    def let(self, name: str) -> Node | None:
        return self._lazy(name, self.let_decls[name].value, self.let_decls[name].name_span, "let",
                          _Scope("dynamics"), self._let_values, self._let_state)

    def tie(self, name: str) -> Node | None:
        decl = self.tie_decls[name]
        node = self._lazy(name, decl.value, decl.name_span, "tie", _Scope("tie"), self._tie_values, self._tie_state)
        return node

    def _lazy(self, name, expr, span, kind, scope, values, state):
        if name in values:
            return values[name]
        if state.get(name) == "active":
            self.error(EqnNameError, f"{kind} '{name}' is defined in terms of itself", span)
            state[name] = "failed"
            return None
        if state.get(name) == "failed":
            return None
        state[name] = "active"
        body = self.lower(expr, scope)
        if state.get(name) == "failed" or body is None:
            state[name] = "failed"
            return None
        if scope.uses_beta:
            self._let_beta.setdefault(name, scope.uses_beta[0])
        node = _ir.op("named", (body,), body.shape, (("name", name),), span=span)
        values[name] = node
        state[name] = "done"
        return node

    # ------------------------------------------------------------------ expressions
    def lower(self, e: ast.Expr, scope: _Scope) -> Node | None:
        try:
            return self._lower(e, scope)
        except ShapeMismatch as exc:
            self.error(EqnShapeError, str(exc), e.span)
            return None

    def _lower(self, e: ast.Expr, scope: _Scope) -> Node | None:
        if isinstance(e, ast.Number):
            return _ir.Const((), e.span, value=e.value)
        if isinstance(e, ast.Name):
            node = self.resolve(e, scope)
            if node is not None and isinstance(node, Op) and node.op == "named" and node.attr("name") in self._let_beta:
                if scope.where == "cost":
                    self.error(EqnFormError, f"'beta' cannot appear in the cost, but the let '{e.id}' uses it; "
                               "the nudge belongs to the dynamics", e.span)
                    return None
                scope.uses_beta.append(e.span)
            return node
        if isinstance(e, ast.Beta):
            if scope.where in ("cost", "tie", "fn"):
                where = {"cost": "the cost", "tie": "a tie", "fn": "a function body"}[scope.where]
                self.error(EqnFormError, f"'beta' cannot appear in {where}; the nudge belongs to the dynamics", e.span)
                return None
            scope.uses_beta.append(e.span)
            return BETA
        if isinstance(e, ast.Neg):
            operand = self.lower(e.operand, scope)
            return None if operand is None else _ir.neg(operand, e.span)
        if isinstance(e, ast.Transpose):
            operand = self.lower(e.operand, scope)
            return None if operand is None else _ir.transpose(operand, e.span)
        if isinstance(e, ast.BinOp):
            left, right = self.lower(e.left, scope), self.lower(e.right, scope)
            if left is None or right is None:
                return None
            build = {"+": _ir.add, "-": _ir.sub, "*": _ir.mul, "/": _ir.div, "^": _ir.power,
                     "@": _ir.matmul, ".": _ir.dot}[e.op]
            try:
                node = build(left, right, e.span)
            except ShapeMismatch as exc:
                self.error(EqnShapeError, str(exc), e.span)
                return None
            except (ArithmeticError, TypeError):  # folding two constants: overflow, 0^-1, complex
                if not (isinstance(left, _ir.Const) and isinstance(right, _ir.Const)):
                    raise
                node = _ir.const(math.inf)
            if isinstance(node, _ir.Const) and not math.isfinite(node.value):
                self.error(EqnConstError, "constant expression has no finite real value", e.span)
                return None
            return node
        if isinstance(e, ast.Call):
            return self.call(e, scope)
        raise AssertionError(f"unhandled expression {e!r}")

    # ------------------------------------------------------------------ calls
    def call(self, e: ast.Call, scope: _Scope) -> Node | None:
        name = e.func
        if name == "grad":
            return self._grad(e, scope)
        if name in self.fn_decls:
            self.used.add(name)
            return self._user_call(e, scope)
        if name not in LIBRARY and _functions.lookup(name) is None:
            if name in self.declared:
                self.error(EqnFunctionError, f"'{name}' is {_a(self.declared[name][0])}, not a function", e.func_span)
            else:
                known = list(self.fn_decls) + sorted(LIBRARY)
                self.error(EqnNameError, f"unknown function '{name}'{self._suggest(name, known)}", e.func_span)
            for a in e.args:
                self.lower(a, scope)
            return None
        args = [self.lower(a, scope) for a in e.args]
        if any(a is None for a in args):
            return None
        python = _functions.lookup(name)
        op_name = python.op_name if python is not None else name
        if op_name in OPS and not OPS[op_name].holomorphic:
            self._non_holomorphic.setdefault((name, e.span.line, e.span.column), NonHolomorphic(name, e.span))
        if name in ELEMENTWISE_FUNCTIONS:
            if not self._arity(e, 1):
                return None
            return elementwise_derivative(name, args[0], e.primes, e.span)
        if e.primes and python is not None and python.elementwise:
            if not self._arity(e, 1):
                return None
            return _functions.derivative_node(python, args[0], e.primes, e.span)
        if e.primes:
            self.error(EqnFunctionError, f"'{name}' is not an elementwise function of one argument, so {name}' "
                       "is not defined", e.func_span)
            return None
        if python is not None:
            return self._python_call(python, e, args)
        return self._structural(name, e, args)

    def _arity(self, e: ast.Call, count: int, keywords: tuple[str, ...] = ()) -> bool:
        ok = True
        if len(e.args) != count:
            self.error(EqnFunctionError, f"'{e.func}' takes {count} argument{'s' if count != 1 else ''}, "
                       f"got {len(e.args)}", e.span)
            ok = False
        for kw in e.keywords:
            if kw.name not in keywords:
                allowed = f" (allowed: {', '.join(keywords)})" if keywords else ""
                self.error(EqnFunctionError, f"'{e.func}' has no keyword '{kw.name}'{allowed}", kw.span)
                ok = False
        return ok

    def _keyword(self, e: ast.Call, name: str, default, minimum: int = 1, integer: bool = True):
        for kw in e.keywords:
            if kw.name == name:
                if integer:
                    return self._int_const(kw.value, f"'{name}' of {e.func}", minimum)
                value = self._const_expr(kw.value)
                if value is not None and value <= 0:
                    self.error(EqnConstError, f"'{name}' of {e.func} must be positive, got {_fmt(value)}", kw.value.span)
                    return None
                return value
        return default

    def _structural(self, name: str, e: ast.Call, args: list[Node]) -> Node | None:
        span = e.span
        if name in ("sum", "mean"):
            if not self._arity(e, 1):
                return None
            return _ir.reduce_sum(args[0], span) if name == "sum" else _ir.op("mean", (args[0],), (), span=span)
        if name in ("softmax", "logsumexp"):
            if not self._arity(e, 1):
                return None
            if args[0].ndim == 0:
                self.error(EqnShapeError, f"'{name}' needs a vector or tensor, got a scalar", e.args[0].span)
                return None
            return _ir.op(name, (args[0],), args[0].shape if name == "softmax" else (), span=span)
        if name in ("dot", "outer"):
            if not self._arity(e, 2):
                return None
            return (_ir.dot if name == "dot" else _ir.outer)(args[0], args[1], span)
        if name == "transpose":
            return _ir.transpose(args[0], span) if self._arity(e, 1) else None
        if name == "flatten":
            if not self._arity(e, 1):
                return None
            size = 1
            for d in args[0].shape:
                size *= d
            return _ir.reshape(args[0], (size,), span)
        if name in ("conv", "conv_transpose"):
            if not self._arity(e, 2, ("stride", "padding")):
                return None
            stride = self._keyword(e, "stride", 1)
            padding = self._keyword(e, "padding", 0, minimum=0)
            if stride is None or padding is None:
                return None
            return self._conv(name, e, args[0], args[1], stride, padding)
        if name == "softpool":
            if not self._arity(e, 1, ("size", "stride", "tau")):
                return None
            size = self._keyword(e, "size", 2)
            stride = self._keyword(e, "stride", size)
            tau = self._keyword(e, "tau", 1.0, integer=False)
            if size is None or stride is None or tau is None:
                return None
            x = args[0]
            if x.ndim != 3:
                self.error(EqnShapeError, f"softpool needs a [C, H, W] tensor, got {fmt_shape(x.shape)}", e.args[0].span)
                return None
            c, h, w = x.shape
            if h < size or w < size:
                self.error(EqnShapeError, f"softpool window {size} is larger than the input {fmt_shape(x.shape)}", span)
                return None
            shape = (c, (h - size) // stride + 1, (w - size) // stride + 1)
            return _ir.op("softpool", (x,), shape, (("size", size), ("stride", stride), ("tau", float(tau))), span)
        raise AssertionError(name)

    def _conv(self, name, e, x: Node, kernel: Node, stride: int, padding: int) -> Node | None:
        if x.ndim != 3:
            self.error(EqnShapeError, f"{name} needs a [C, H, W] input, got {fmt_shape(x.shape)}", e.args[0].span)
            return None
        if kernel.ndim != 4:
            self.error(EqnShapeError, f"{name} needs a [out, in, kh, kw] kernel, got {fmt_shape(kernel.shape)}",
                       e.args[1].span)
            return None
        out_c, in_c, kh, kw = kernel.shape
        if name == "conv":
            if x.shape[0] != in_c:
                self.error(EqnShapeError, f"conv input has {x.shape[0]} channels but the kernel "
                           f"{fmt_shape(kernel.shape)} expects {in_c}", e.span)
                return None
            h = (x.shape[1] + 2 * padding - kh) // stride + 1
            w = (x.shape[2] + 2 * padding - kw) // stride + 1
            shape = (out_c, h, w)
        else:
            if x.shape[0] != out_c:
                self.error(EqnShapeError, f"conv_transpose input has {x.shape[0]} channels but the kernel "
                           f"{fmt_shape(kernel.shape)} produces {out_c}", e.span)
                return None
            h = (x.shape[1] - 1) * stride - 2 * padding + kh
            w = (x.shape[2] - 1) * stride - 2 * padding + kw
            shape = (in_c, h, w)
        if h < 1 or w < 1:
            self.error(EqnShapeError, f"{name} of {fmt_shape(x.shape)} with kernel {fmt_shape(kernel.shape)} "
                       f"leaves no output", e.span)
            return None
        return _ir.op(name, (x, kernel), shape, (("stride", stride), ("padding", padding)), e.span)

    def _python_call(self, python, e: ast.Call, args: list[Node]) -> Node | None:
        if e.keywords:
            self.error(EqnFunctionError, f"Python function '{python.name}' takes no keywords", e.keywords[0].span)
            return None
        if python.arity is not None and not self._arity(e, python.arity):
            return None
        shapes = [a.shape for a in args]
        try:
            if python.shape is not None:
                shape = tuple(int(d) for d in python.shape(*shapes))
            else:
                shape = ()
                for s in shapes:
                    shape = _ir.broadcast_shapes(shape, s)
        except ShapeMismatch as exc:
            self.error(EqnShapeError, f"arguments of '{python.name}': {exc}", e.span)
            return None
        except Exception as exc:  # the user's shape function refused the arguments
            self.error(EqnShapeError, f"shape function of '{python.name}' refused argument shapes "
                       f"{', '.join(fmt_shape(s) for s in shapes)}: {exc}", e.span)
            return None
        return _ir.op(python.op_name, tuple(args), shape, (("name", python.name),), e.span)

    def _grad(self, e: ast.Call, scope: _Scope) -> Node | None:
        if not self._arity(e, 2) or e.primes:
            if e.primes:
                self.error(EqnFunctionError, "grad' is not defined; nest grad(…) instead", e.func_span)
            return None
        wrt = e.args[1]
        if not isinstance(wrt, ast.Name):
            self.error(EqnFunctionError, "the second argument of grad must be the name of a state, input, "
                       "parameter or let", wrt.span)
            return None
        target = self.lower(wrt, scope)
        body = self.lower(e.args[0], scope)
        if target is None or body is None:
            return None
        if body.shape != ():
            self.error(EqnShapeError, f"grad needs a scalar expression, got shape {fmt_shape(body.shape)}", e.args[0].span)
            return None
        if isinstance(target, Var):
            key = target.name
        elif isinstance(target, Op) and target.op == "named":
            key = target.attr("name")
        else:
            self.error(EqnFunctionError, f"cannot differentiate with respect to '{wrt.id}'", wrt.span)
            return None
        return vjp(body, {key}, _ir.const(1.0)).get(key, _ir.zeros(target.shape))

    def _user_call(self, e: ast.Call, scope: _Scope) -> Node | None:
        fn = self.fn_decls[e.func]
        if e.keywords:
            self.error(EqnFunctionError, f"'{fn.name}' takes no keywords", e.keywords[0].span)
            return None
        if len(e.args) != len(fn.params):
            self.error(EqnFunctionError, f"'{fn.name}' takes {len(fn.params)} argument"
                       f"{'s' if len(fn.params) != 1 else ''}, got {len(e.args)}", e.span)
            return None
        args = [self.lower(a, scope) for a in e.args]
        if any(a is None for a in args):
            return None
        if not self.fn_ok(fn):
            return None
        body = self._fn_bodies.get(fn.name)
        if body is not None:
            node: Node = _ir.op("call", (args[0],), args[0].shape,
                                (("name", fn.name), ("primes", 0), ("param", fn.params[0]), ("body", body)), e.span)
            for _ in range(e.primes):
                node = derivative_call(node)
            return node
        if e.primes:
            self.error(EqnFunctionError, f"'{fn.name}' is not an elementwise function of one argument, so {fn.name}' "
                       "is not defined", e.func_span)
            return None
        local = _Scope("fn", {p: a for p, a in zip(fn.params, args)})
        return self.lower(fn.body, local)

    def fn_ok(self, fn: ast.FnDecl) -> bool:
        """Check a definition once and classify it. A one-argument function whose body maps a
        vector to a vector through elementwise operations only is elementwise: it is kept as a
        call (printed `rho(h)`, differentiable as `rho'(h)`) with its body on a scalar. Any other
        function is inlined at each call with the arguments' real shapes."""
        state = self._fn_state.get(fn.name)
        if state == "done":
            return True
        if state == "active":
            self.error(EqnFunctionError, f"function '{fn.name}' calls itself; recursion is not supported", fn.name_span)
            self._fn_state[fn.name] = "failed"
            return False
        if state == "failed":
            return False
        self._fn_state[fn.name] = "active"
        kept, self.errors = self.errors, []
        probe = self.lower(fn.body, _Scope("fn", {p: Var((3,), fn.name_span, name=p, kind="local")
                                                  for p in fn.params}))
        probe_errors, self.errors = self.errors, kept
        # Shapes depend on the arguments, so only errors about names and definitions count here.
        for error in probe_errors:
            if not isinstance(error, EqnShapeError):
                self.errors.append(error)
        if self._fn_state.get(fn.name) == "failed" or any(not isinstance(e, EqnShapeError) for e in probe_errors):
            self._fn_state[fn.name] = "failed"
            return False
        if len(fn.params) == 1 and probe is not None and probe.shape == (3,) and self._elementwise(probe):
            body = self.lower(fn.body, _Scope("fn", {p: Var((), fn.name_span, name=p, kind="local")
                                                     for p in fn.params}))
            if body is None:
                self._fn_state[fn.name] = "failed"
                return False
            self._fn_bodies[fn.name] = body
        self._fn_state[fn.name] = "done"
        return True

    @staticmethod
    def _elementwise(body: Node) -> bool:
        return all(not isinstance(node, Op) or node.op in ("call", "broadcast") or OPS[node.op].elementwise
                   for node in _ir.walk(body))

    # ------------------------------------------------------------------ the model
    def run(self) -> Program | None:
        self._let_values: dict[str, Node] = {}
        self._let_state: dict[str, str] = {}
        self._let_beta: dict[str, ast.Span] = {}
        self._tie_values: dict[str, Node] = {}
        self._tie_state: dict[str, str] = {}
        self._fn_bodies: dict[str, Node] = {}
        self._fn_state: dict[str, str] = {}
        self._non_holomorphic: dict[tuple, NonHolomorphic] = {}
        self.collect()
        if self.model_decl is not None and self.model_decl.holomorphic:
            self.require_holomorphic = True
        self.evaluate_consts()
        self.declare_variables()
        self.check_ties_and_pairs()
        form = self.check_form()
        dynamics_scope = _Scope("dynamics")
        energy = None
        written: dict[str, Node] = {}
        if form == "energy":
            decl = self.energies[0]
            energy = self.lower(decl.value, dynamics_scope)
            if energy is not None and energy.shape != ():
                self.error(EqnShapeError, f"the energy must be a scalar, got shape {fmt_shape(energy.shape)}; "
                           f"use sum(…) or '.'", decl.value.span)
                energy = None
            if energy is not None:
                reached = _ir.free_vars(energy)
                for s in self.states:
                    if s not in reached:
                        self.error(EqnFormError, f"state '{s}' does not appear in the energy, so it has no dynamics",
                                   self.var_decls[s].span)
        elif form in ("flow", "map"):
            equations = self.flows if form == "flow" else self.maps
            for eq in equations:
                if eq.state not in self.var_decls:
                    if eq.state not in self.declared:
                        self.error(EqnNameError, f"undefined state '{eq.state}'{self._suggest(eq.state, self.states)}",
                                   eq.state_span)
                    else:
                        self.error(EqnFormError, f"'{eq.state}' is {_a(self.declared[eq.state][0])}, not a state; "
                                   "only states have dynamics", eq.state_span)
                    self.lower(eq.value, _Scope("dynamics"))
                    continue
                if self.var_decls[eq.state].kind != "state":
                    self.error(EqnFormError, f"'{eq.state}' is {_a(self.var_decls[eq.state].kind)}, not a state; "
                               "only states have dynamics", eq.state_span)
                    continue
                if eq.state in written:
                    self.error(EqnFormError, f"state '{eq.state}' has a second equation", eq.state_span)
                    continue
                self.used.add(eq.state)
                value = self.lower(eq.value, dynamics_scope)
                if value is None or eq.state not in self.states:
                    written[eq.state] = _ir.zeros(())
                    continue
                target_shape = self.states[eq.state]
                if value.shape != target_shape:
                    try:
                        fits = _ir.broadcast_shapes(value.shape, target_shape) == target_shape
                    except ShapeMismatch:
                        fits = False
                    if not fits:
                        self.error(EqnShapeError, f"the equation of '{eq.state}' has shape {fmt_shape(value.shape)}, "
                                   f"but '{eq.state}' is {fmt_shape(target_shape)}", eq.value.span)
                        written[eq.state] = _ir.zeros(())
                        continue
                    value = _ir.broadcast(value, target_shape)
                written[eq.state] = value
            for s in self.states:
                if s not in written:
                    how = f"d {s}/dt = …" if form == "flow" else f"{s} <- …"
                    self.error(EqnFormError, f"state '{s}' has no dynamics; add '{how}'", self.var_decls[s].span)
        explicit_beta = bool(dynamics_scope.uses_beta)
        coordinates = self.check_coordinates(form)
        cost = self.check_cost(explicit_beta)
        prediction = self.check_prediction()
        self.check_readout_predicted(cost, [energy] if energy is not None else list(written.values()), prediction)
        self.check_unused()
        for name in self.let_decls:
            self.let(name)
        for name in self.tie_decls:
            if name in self.params:
                self.tie(name)
        for fn in self.fn_decls.values():
            self.fn_ok(fn)
        non_holomorphic = self.classify_holomorphy()
        if self.errors:
            return None
        program = self.derive(form, energy, written, cost, explicit_beta, non_holomorphic, coordinates)
        program.prediction = prediction
        return program

    def check_form(self) -> str | None:
        kinds = []
        for kind, items in (("energy", self.energies), ("flow", self.flows), ("map", self.maps)):
            if items:
                kinds.append((items[0].span.line, kind, items[0]))
        kinds.sort(key=lambda k: k[0])
        if not kinds:
            span = self.model_decl.span if self.model_decl else ast.Span.unknown()
            self.error(EqnFormError, "no dynamics: write an energy ('energy E = …'), flow equations "
                       "('d h/dt = …') or maps ('h <- …')", span)
            return None
        first_line, first_kind, _ = kinds[0]
        for line, kind, stmt in kinds[1:]:
            self.error(EqnFormError, f"this {kind} mixes forms with the {first_kind} at line {first_line}; "
                       "a model uses one form of dynamics", stmt.span)
        for extra in self.energies[1:]:
            self.error(EqnFormError, f"a second energy (the first is at line {self.energies[0].span.line})", extra.span)
        if len(kinds) > 1:
            return None
        if not self.states:
            if not any(d.kind == "state" for d in self.var_decls.values()):
                self.error(EqnFormError, "the model declares no state", kinds[0][2].span)
            return None
        return first_kind

    def check_coordinates(self, form: str | None) -> dict[str, Node]:
        """state → its coordinate φ(u) (a `named` node), for the `coordinates` the model declares.
        A coordinate must be an elementwise function of its one state, so that φ'(u) is a
        diagonal and EP's field φ'(u)⊙F(u) has the fixed points of F."""
        found: dict[str, Node] = {}
        owner: dict[str, str] = {}
        for name, decl in self.coordinate_decls.items():
            self.used.add(name)
            node = self.let(name)
            if node is None:
                continue
            if form == "energy":
                self.error(EqnFormError, "coordinates apply to flows and maps; an energy's gradient flow is already "
                           "what EP differentiates", decl.span)
                continue
            leaves = _ir.free_vars(node.args[0])
            states = [s for s in self.states if s in leaves]
            others = [f"{v.kind} '{v.name}'" for v in leaves.values() if v.kind != "state"]
            if len(states) != 1 or others:
                read = ", ".join([f"state '{s}'" for s in states] + others) or "nothing"
                self.error(EqnFormError, f"coordinate '{name}' must be a function of exactly one state and constants; "
                           f"it reads {read}", decl.value.span)
                continue
            state = states[0]
            elementwise = all(not isinstance(n, Op) or n.op in ("call", "broadcast", "named") or OPS[n.op].elementwise
                              for n in _ir.walk(node.args[0]))
            if node.shape != self.states[state] or not elementwise:
                self.error(EqnFormError, f"coordinate '{name}' must be an elementwise function of '{state}' "
                           f"(like sigma({state})), with the shape of '{state}'", decl.value.span)
                continue
            if state in owner:
                self.error(EqnFormError, f"state '{state}' already has the coordinate '{owner[state]}'", decl.name_span)
                continue
            owner[state] = name
            found[state] = node
        return found

    def check_cost(self, explicit_beta: bool) -> Node | None:
        for extra in self.costs[1:]:
            self.error(EqnFormError, f"a second cost (the first is at line {self.costs[0].span.line})", extra.span)
        if not self.costs:
            span = self.model_decl.span if self.model_decl else ast.Span.unknown()
            self.error(EqnFormError, "no cost: declare the loss at the output, e.g. "
                       "'cost C = 0.5 * sum((o - y)^2)'", span)
            return None
        decl = self.costs[0]
        cost = self.lower(decl.value, _Scope("cost"))
        if cost is None:
            return None
        if cost.shape != ():
            self.error(EqnShapeError, f"the cost must be a scalar, got shape {fmt_shape(cost.shape)}; use sum(…)",
                       decl.value.span)
            return None
        reached = _ir.free_vars(cost)
        if not any(v.kind == "state" for v in reached.values()):
            self.error(EqnFormError, "the cost reads no state, so it cannot teach the network", decl.value.span)
            return None
        return cost

    def check_prediction(self) -> Node | None:
        for extra in self.predicts[1:]:
            self.error(EqnFormError, f"a second 'predict' (the first is at line {self.predicts[0].span.line})",
                       extra.span)
        if not self.predicts:
            return None
        decl = self.predicts[0]
        node = self.lower(decl.value, _Scope("cost"))
        if node is not None and node.ndim != 1:
            self.error(EqnShapeError, f"'predict' needs a vector of class scores, got shape {fmt_shape(node.shape)}",
                       decl.value.span)
            return None
        return node

    def check_readout_predicted(self, cost: Node | None, dynamics: list[Node], prediction: Node | None) -> None:
        """A cost that trains a readout (params the dynamics never read) next to a prediction that
        ignores it: the class would be the argmax of the output state, not of the trained scores."""
        if cost is None or prediction is not None or any(d is None for d in dynamics):
            return
        in_dynamics = {n for d in dynamics for n, v in _ir.free_vars(d).items() if v.kind == "param"}
        readout = sorted(n for n, v in _ir.free_vars(cost).items() if v.kind == "param" and n not in in_dynamics)
        if readout:
            output = next((n for n, d in self.var_decls.items() if d.kind == "state" and d.output), None)
            names = ", ".join(readout)
            self.warn(f"the cost trains a readout ({names}) that no 'predict' uses: the predicted class is the argmax "
                      f"of the output state{f' {output!r}' if output else ''}; add 'predict EXPR' with the "
                      f"readout's class scores", self.costs[0].span)

    def check_ties_and_pairs(self):
        for name, decl in self.tie_decls.items():
            if name not in self.var_decls or self.var_decls[name].kind != "param":
                what = _a(self.declared[name][0]) if name in self.declared else "undeclared"
                self.error(EqnNameError, f"only a declared param can be tied; '{name}' is {what}", decl.name_span)
                continue
            if name not in self.params:
                continue
            node = self.tie(name)
            if node is not None and node.shape != self.params[name].shape:
                self.error(EqnShapeError, f"tie of '{name}' has shape {fmt_shape(node.shape)}, but '{name}' is "
                           f"{fmt_shape(self.params[name].shape)}", decl.value.span)
                self._tie_values.pop(name)
                self._tie_state[name] = "failed"  # its uses stay silent
        for p in self.pair_decls:
            ok = True
            for name, span in ((p.forward, p.forward_span), (p.backward, p.backward_span)):
                if name not in self.var_decls or self.var_decls[name].kind != "param":
                    self.error(EqnNameError, f"a pair joins two params; '{name}' is not a param", span)
                    ok = False
            if not ok or p.forward not in self.params or p.backward not in self.params:
                continue
            self.used.update((p.forward, p.backward))
            f, b = self.params[p.forward].shape, self.params[p.backward].shape
            expected = f[::-1] if len(f) == 2 else f
            if b != expected:
                self.error(EqnShapeError, f"pair {p.forward}, {p.backward}: the backward weight must have shape "
                           f"{fmt_shape(expected)} (the forward one is {fmt_shape(f)}), got {fmt_shape(b)}",
                           p.backward_span)

    def check_unused(self):
        for name, (kind, span) in self.declared.items():
            if name in self.used or kind in ("state",):
                continue
            if kind == "target" and self.costs:
                continue
            self.warn(f"{kind} '{name}' is never used", span)

    def classify_holomorphy(self) -> list[NonHolomorphic]:
        """Every call to a non-holomorphic operation the author wrote (recorded while lowering, so
        that simplification cannot hide one)."""
        found = self._non_holomorphic
        result = sorted(found.values(), key=lambda n: (n.span.line, n.span.column))
        if self.require_holomorphic:
            for n in result:
                self.error(EqnHolomorphyError, f"'{n.operation}' is not holomorphic, but the model is declared "
                           "holomorphic (complex β needs complex-differentiable dynamics)", n.span)
        return result

    # ------------------------------------------------------------------ derivations
    def derive(self, form, energy, written, cost, explicit_beta, non_holomorphic, coordinates) -> Program:
        states = self.states
        update = None
        slopes = {s: coordinate_slope(node, s, states[s]) for s, node in coordinates.items()}
        if form == "energy":
            total = energy if explicit_beta else _ir.add(energy, _ir.mul(BETA, cost))
            free_energy = _ir.substitute(energy, {"beta": _ir.zeros(())}) if explicit_beta else energy
            dynamics = energy_flow(free_energy, states)
            field = energy_flow(total, states)
        else:
            nudges = {} if explicit_beta else nudge_terms(cost, states, coordinates, slopes)
            self._nudges = nudges
            nudged = {s: _ir.add(written[s], nudges[s]) if s in nudges else written[s] for s in states}
            dynamics = {s: _ir.substitute(written[s], {"beta": _ir.zeros(())}) for s in states}
            if form == "flow":
                field = nudged
            else:
                update = nudged
                field = {s: _ir.sub(nudged[s], self.leaves[s]) for s in states}
        ep_field = {s: _ir.mul(slopes[s], f) if s in slopes else f for s, f in field.items()}
        at_rest = {"beta": _ir.zeros(())}
        free_params = {p: spec.shape for p, spec in self.params.items() if p not in self.tie_decls}
        free_energy = _ir.substitute(energy, at_rest) if energy is not None else None
        coordinate_names = {s: node.attr("name") for s, node in coordinates.items()}
        rules = derive_rules(form, free_params, free_energy, written if form != "energy" else {}, states,
                             cost, dynamics, coordinate_names)
        name = self.model_decl.name if self.model_decl else _stem(self.module.filename)
        return Program(
            name=name, filename=self.module.filename, source=self.module.source, form=form,
            consts=dict(self.consts), inputs=dict(self.inputs), targets=dict(self.targets), states=dict(states),
            output=self.output, params={p: s for p, s in self.params.items() if p not in self.tie_decls},
            ties={p: self._tie_values[p] for p in self.tie_decls if p in self._tie_values},
            pairs=[(p.forward, p.backward) for p in self.pair_decls],
            lets=dict(self._let_values), energy=energy, cost=cost, dynamics=dynamics, field=field, update=update,
            explicit_beta=explicit_beta, non_holomorphic=non_holomorphic, rules=rules,
            warnings=self.warnings, coordinates={s: Coordinate(coordinate_names[s], coordinates[s], slopes[s])
                                                 for s in coordinates},
            ep_field=ep_field, nudges=getattr(self, "_nudges", {}),
            free_field={s: _ir.substitute(f, at_rest) for s, f in field.items()},
            free_ep_field={s: _ir.substitute(f, at_rest) for s, f in ep_field.items()},
            sweep_blocks=sweep_blocks(field),
        )


def coordinate_slope(coordinate: Node, state: str, shape) -> Node:
    """φ'(u) of an elementwise coordinate s = φ(u), derived symbolically."""
    ones = _ir.broadcast(_ir.const(1.0), shape)
    return vjp(coordinate.args[0], {state}, ones).get(state, _ir.zeros(shape))


def elementwise_derivative(name: str, arg: Node, primes: int, span) -> Node:
    """f^(k)(arg) for a library elementwise function, derived symbolically."""
    if primes == 0:
        return _ir.unary(name, arg, span)
    placeholder = Var((), span, name="_u", kind="local")
    expression: Node = _ir.unary(name, placeholder, span)
    for _ in range(primes):
        expression = gradient(expression, "_u", ())
    return _ir.broadcast(_ir.substitute(expression, {"_u": arg}), arg.shape)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in tuple("aeiou") else f"a {noun}"


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _stem(filename: str) -> str:
    import os
    return os.path.splitext(os.path.basename(filename))[0] or "model"


def check(module: ast.Module, *, consts: dict | None = None, holomorphic: bool = False) -> Program:
    """Check and derive a parsed model; raise `ErrorList` with every error found."""
    checker = _Checker(module, consts, holomorphic)
    try:
        program = checker.run()
    finally:
        for error in checker.errors + checker.warnings:
            error.located(module.filename, module.source)
    if checker.errors:
        raise ErrorList(checker.errors)
    assert program is not None
    return program
