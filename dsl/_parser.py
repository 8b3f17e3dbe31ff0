"""Text → AST: a Lark LALR(1) parser with positions, and a transformer into `eqn.dsl.ast` nodes."""

from __future__ import annotations

import difflib
import functools
import re
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast
from .errors import EqnError, EqnSyntaxError

_READABLE = {
    "NAME": "a name",
    "NUMBER": "a number",
    "PRIMED": "a primed name",
    "DDT": "'d<state>/dt'",
    "POW": "'^'",
    "$END": "end of file",
}

_STATEMENTS = ("model", "const", "input", "target", "state", "param", "pair", "tie", "fn", "let",
               "coordinates", "energy", "cost", "predict")
_KEYWORDS = _STATEMENTS + ("output", "holomorphic")
_BINARY_OPERATORS = ("+", "-", "*", "/", "@", ".", "^", "=", ",", "~")
_EXPRESSION_START = {"LPAR", "PLUS", "MINUS", "NAME", "NUMBER", "PRIMED", "BETA"}


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = resources.files(__package__).joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=True)


def _span_of_token(token: Token) -> ast.Span:
    return ast.Span(token.line, token.column, token.end_line or token.line,
                    token.end_column or token.column + len(token))


def _span(meta) -> ast.Span:
    if getattr(meta, "empty", True):
        return ast.Span.unknown()
    return ast.Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _number(token: Token) -> ast.Number:
    text = str(token)
    is_integer = re.fullmatch(r"[0-9]+", text) is not None
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise EqnSyntaxError(f"number {text} is too large", _span_of_token(token))
    return ast.Number(_span_of_token(token), value, is_integer)


def _binop(op: str):
    def build(self, meta, c):
        return ast.BinOp(_span(meta), op, c[0], c[1])
    return build


@v_args(meta=True)
class _ToAst(Transformer):
    """Parse tree → AST. Each method receives Lark's `meta` (positions) and the children."""

    def start(self, meta, statements):
        return tuple(statements)

    # statements ------------------------------------------------------------------------
    def model_decl(self, meta, c):
        return ast.ModelDecl(_span(meta), str(c[0]), c[1] is not None)

    def const_decl(self, meta, items):
        return list(items)

    def const_item(self, meta, c):
        return ast.ConstDecl(_span(meta), str(c[0]), c[1])

    def shape(self, meta, dims):
        return tuple(dims)

    def init(self, meta, c):
        args = tuple(a for a in c[1:] if a is not None)
        return ast.Initializer(str(c[0]), args, _span(meta))

    def _var(self, kind, meta, c, output=False, init=None):
        name, shape = c[0], c[1]
        return ast.VarDecl(_span(meta), kind, str(name), _span_of_token(name), shape or (), output, init)

    def input_decl(self, meta, c):
        return self._var("input", meta, c)

    def target_decl(self, meta, c):
        return self._var("target", meta, c)

    def state_decl(self, meta, c):
        return self._var("state", meta, c, output=c[2] is not None)

    def param_decl(self, meta, c):
        return self._var("param", meta, c, init=c[2])

    def pair_decl(self, meta, c):
        return ast.PairDecl(_span(meta), str(c[0]), str(c[1]), _span_of_token(c[0]), _span_of_token(c[1]))

    def tie_decl(self, meta, c):
        return ast.TieDecl(_span(meta), str(c[0]), _span_of_token(c[0]), c[1])

    def fn_decl(self, meta, c):
        return ast.FnDecl(_span(meta), str(c[0]), _span_of_token(c[0]), tuple(str(p) for p in c[1:-1]), c[-1])

    def let_decl(self, meta, c):
        return ast.LetDecl(_span(meta), str(c[0]), _span_of_token(c[0]), c[1])

    def coordinates_decl(self, meta, items):
        return list(items)

    def coordinate_item(self, meta, c):
        return ast.CoordinateDecl(_span(meta), str(c[0]), _span_of_token(c[0]), c[1])

    def energy_decl(self, meta, c):
        return ast.EnergyDecl(_span(meta), str(c[0]), c[1])

    def cost_decl(self, meta, c):
        return ast.CostDecl(_span(meta), str(c[0]), c[1])

    def predict_decl(self, meta, c):
        return ast.PredictDecl(_span(meta), c[0])

    def flow_eq(self, meta, c):
        token = c[0]
        match = re.match(r"d[ \t]*([A-Za-z_][A-Za-z0-9_]*)", str(token))
        name = match.group(1)
        offset = match.start(1)
        span = ast.Span(token.line, token.column + offset, token.line, token.column + offset + len(name))
        return ast.FlowEq(_span(meta), name, span, c[1])

    def map_eq(self, meta, c):
        return ast.MapEq(_span(meta), str(c[0]), _span_of_token(c[0]), c[1])

    # expressions -----------------------------------------------------------------------
    def number(self, meta, c):
        return _number(c[0])

    def var(self, meta, c):
        return ast.Name(_span_of_token(c[0]), str(c[0]))

    def primed_var(self, meta, c):
        text = str(c[0])
        name = text.rstrip("'")
        span = _span_of_token(c[0])
        node: ast.Expr = ast.Name(ast.Span(span.line, span.column, span.line, span.column + len(name)), name)
        for _ in range(len(text) - len(name)):
            node = ast.Transpose(span, node)
        return node

    def beta(self, meta, c):
        return ast.Beta(_span(meta))

    add = _binop("+")
    sub = _binop("-")
    mul = _binop("*")
    div = _binop("/")
    matmul = _binop("@")
    dot = _binop(".")

    def pow(self, meta, c):
        return ast.BinOp(_span(meta), "^", c[0], c[2])

    def neg(self, meta, c):
        return ast.Neg(_span(meta), c[0])

    def transpose(self, meta, c):
        return ast.Transpose(_span(meta), c[0])

    def kwarg(self, meta, c):
        return ast.Keyword(str(c[0]), c[1], _span(meta))

    def call(self, meta, c):
        func = c[0]
        text = str(func)
        name = text.rstrip("'")
        args = [a for a in c[1:] if a is not None]
        positional = tuple(a for a in args if not isinstance(a, ast.Keyword))
        keywords = tuple(a for a in args if isinstance(a, ast.Keyword))
        return ast.Call(_span(meta), name, len(text) - len(name), positional, keywords, _span_of_token(func))


def _flatten(statements) -> tuple[ast.Statement, ...]:
    flat: list[ast.Statement] = []
    for s in statements:
        flat.extend(s if isinstance(s, list) else [s])
    return tuple(flat)


def _describe_expected(expected: set[str]) -> str:
    if {"NAME", "NUMBER"} <= expected <= _EXPRESSION_START:
        return "; expected an expression"
    names = []
    for terminal in sorted(expected):
        if terminal in _READABLE:
            names.append(_READABLE[terminal])
            continue
        try:
            pattern = _lark().get_terminal(terminal).pattern
        except KeyError:
            continue
        if isinstance(pattern, lark.lexer.PatternStr):
            names.append(f"'{pattern.value}'" if pattern.value != "'" else '"\'"')
    names = sorted(set(names))
    if not names:
        return ""
    if len(names) > 6:
        return f"; expected one of {', '.join(names[:6])}, …"
    return f"; expected {' or '.join(names)}" if len(names) <= 2 else f"; expected one of {', '.join(names)}"


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    return f"'{token}'"


_ROUGH_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*'*|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|\S")


def _tokens_before(source: str, end: int) -> list[tuple[str, int]]:
    """(text, offset) of the tokens before `end`, comments skipped: a rough lexer, for messages."""
    text = re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), source[:end])
    return [(m.group(), m.start()) for m in _ROUGH_TOKEN.finditer(text)]


def _open_brackets(tokens: list[tuple[str, int]]) -> list[tuple[str, int]] | None:
    """The brackets still open after `tokens`; None if a closer had no opener."""
    stack: list[tuple[str, int]] = []
    for text, offset in tokens:
        if text in "([":
            stack.append((text, offset))
        elif text in ")]":
            if not stack or stack[-1][0] + text not in ("()", "[]"):
                return None
            stack.pop()
    return stack


def _ends_operand(text: str) -> bool:
    return text in (")", "'") or text[:1].isdigit() or (text[:1].isalpha() or text[:1] == "_") and text not in _KEYWORDS


def _in_expression(tokens: list[tuple[str, int]]) -> bool:
    """Whether the last of `tokens` stands in an expression, after a statement's '=' or '<-'."""
    for text, _ in reversed(tokens):
        if text in ("=", "<"):  # the rough lexer splits '<-'
            return True
        if text in _STATEMENTS:
            return False
    return False


def _position(source: str, offset: int, length: int = 1) -> ast.Span:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return ast.Span(line, column, line, column + length)


def _stray_name(before: list[tuple[str, int]], source: str) -> EqnSyntaxError | None:
    """The error for a name the parser read as the state of a map `NAME <- …` (it expected '<-'
    next): a misspelt keyword (`parm W[3]`), or a name on the line of the statement before it,
    which hardly starts a map (`0.5 sum(…)`, `W x`). None when neither fits."""
    if not before:
        return None
    previous = before[-1]
    close = difflib.get_close_matches(previous[0], _KEYWORDS, n=1)
    if close:
        return EqnSyntaxError(f"unknown keyword '{previous[0]}'; did you mean '{close[0]}'?",
                              _position(source, previous[1], len(previous[0])))
    if len(before) >= 2 and "\n" not in source[before[-2][1]:previous[1]]:
        if _ends_operand(before[-2][0]) and _in_expression(before[:-1]):
            return EqnSyntaxError(f"missing operator between '{before[-2][0]}' and '{previous[0]}'",
                                  _position(source, previous[1], len(previous[0])))
        return EqnSyntaxError(f"unexpected '{previous[0]}'", _position(source, previous[1], len(previous[0])))
    return None


def _syntax_error(exc: UnexpectedInput, source: str) -> EqnSyntaxError:
    if isinstance(exc, UnexpectedCharacters):
        char = source[exc.pos_in_stream] if exc.pos_in_stream < len(source) else ""
        span = ast.Span(exc.line, exc.column, exc.line, exc.column + 1)
        return EqnSyntaxError(f"unexpected character {char!r}", span)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        # Lark's end token borrows the position of the last token: point just after it, not after
        # any trailing comment.
        token = getattr(exc, "token", None)
        if token is not None and token.end_line and token.end_column:
            line, column = token.end_line, token.end_column
        else:
            lines = source.splitlines() or [""]
            line = len(lines)
            column = len(lines[-1].rstrip()) + 1
        expected = _describe_expected(set(getattr(exc, "expected", ()) or ()))
        if expected == "; expected '<-'" and (stray := _stray_name(_tokens_before(source, len(source)), source)):
            return stray
        return EqnSyntaxError(f"unexpected end of file{expected}", ast.Span(line, column, line, column + 1))
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    span = _span_of_token(token)
    before = _tokens_before(source, token.start_pos) if token.start_pos is not None else []
    previous = before[-1] if before else ("", 0)
    if _describe_expected(set(exc.expected)) == "; expected '<-'" and (stray := _stray_name(before, source)):
        return stray
    brackets = _open_brackets(before)
    starts_statement = token.type == "DDT" or (token.type != "NAME" and str(token) in _STATEMENTS)
    if starts_statement and not brackets and previous[0] in _BINARY_OPERATORS:
        # `d h/dt = -h + W @ x +` and then the next statement: the operator is what is wrong
        operator = "<-" if previous[0] == "-" and len(before) >= 2 and before[-2][0] == "<" else previous[0]
        start = previous[1] - (len(operator) - 1)
        return EqnSyntaxError(f"'{operator}' has no right operand: the next statement starts on line {token.line}",
                              _position(source, start, len(operator)))
    if token.type in ("RPAR", "RSQB") and brackets == []:
        return EqnSyntaxError(f"unmatched '{token}'", span)
    if brackets and starts_statement:
        # a statement keyword cannot stand inside brackets: the innermost one was left open
        return EqnSyntaxError(f"'{brackets[-1][0]}' was never closed", _position(source, brackets[-1][1]))
    if brackets and brackets[-1][0] == "(" and token.type in ("NAME", "NUMBER", "PRIMED") \
            and _ends_operand(previous[0]):
        opener = brackets[-1][1]
        in_call = opener > 0 and (source[opener - 1].isalnum() or source[opener - 1] in "_'")
        what = "',' or operator" if in_call else "operator"
        return EqnSyntaxError(f"missing {what} between '{previous[0]}' and '{token}'", span)
    return EqnSyntaxError(f"unexpected {_describe_token(token)}{_describe_expected(set(exc.expected))}", span)


def parse(source: str | bytes, filename: str = "<string>") -> ast.Module:
    """Parse `.eqn` text; raise `EqnSyntaxError` located in the file on any malformed input."""
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = source[: exc.start].count(b"\n") + 1
            column = len(source[source.rfind(b"\n", 0, exc.start) + 1: exc.start].decode("utf-8")) + 1
            raise EqnSyntaxError("file is not UTF-8 text", ast.Span(line, column, line, column + 1),
                                 filename=filename, source="") from None
    if "\x00" in source:
        offset = source.index("\x00")
        line = source.count("\n", 0, offset) + 1
        column = offset - (source.rfind("\n", 0, offset) + 1) + 1
        raise EqnSyntaxError("file contains a NUL byte; is it a binary file?",
                             ast.Span(line, column, line, column + 1), filename=filename, source=source)
    try:
        tree = _lark().parse(source)
        statements = _ToAst().transform(tree)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, source).located(filename, source) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, EqnError):
            raise exc.orig_exc.located(filename, source) from None
        raise
    return ast.Module(_flatten(statements), filename, source)


def parse_file(path: str | Path) -> ast.Module:
    path = Path(path)
    return parse(path.read_bytes(), str(path))
