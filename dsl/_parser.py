"""Text → AST: Lark's LALR(1) parser, fed the newlines that end statements, and a transformer into `eqn.dsl.ast`.

A newline ends a statement where the parser can end one and the next token can start one; anywhere
else (inside brackets, after an operator, before a line such as `- b1.rho(h)`) the statement goes
on. Those decisions and the error messages rest on terminal sets read from the grammar's parser.
"""

from __future__ import annotations

import difflib
import functools
import re
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedToken, VisitError
from lark.lexer import PatternStr

from . import ast
from .errors import EqnError, EqnSyntaxError

_READABLE = {"NAME": "a name", "NUMBER": "a number", "PRIMED": "a primed name", "DDT": "'d<state>/dt'",
             "POW": "'^'", "_NL": "end of line", "$END": "end of file"}
_CLOSER = {"(": ")", "[": "]"}


class _Grammar:
    """grammar.lark's parser, and the terminal sets that the newline rule and the messages use."""

    def __init__(self):
        text = resources.files(__package__).joinpath("grammar.lark").read_text()
        self.lark = Lark(text, parser="lalr", lexer="basic", start=["start", "expr"],
                         propagate_positions=True, maybe_placeholders=True)
        self.literal = {t.name: t.pattern.value for t in self.lark.terminals if isinstance(t.pattern, PatternStr)}
        self.terminal = {text: name for name, text in self.literal.items()}
        self.keywords = {name: text for name, text in self.literal.items() if text.isidentifier()}
        self.described = {name: repr(text) for name, text in self.literal.items()} | _READABLE
        self.statement_start = self.parser().accepts() - {"_NL", "$END"}
        self.expression_start = self.parser("expr").accepts()

    def parser(self, start: str = "start", tokens: tuple[Token, ...] = ()):
        """An interactive parser that has been fed `tokens`."""
        parser = self.lark.parse_interactive(start=start)
        for token in tokens:
            parser.feed_token(token)
        return parser


_grammar = functools.cache(_Grammar)  # built once, on the first parse


def _span_of_token(token: Token) -> ast.Span:
    return ast.Span(token.line, token.column, token.end_line or token.line,
                    token.end_column or token.column + len(token))


def _accepts(parser, tokens: list[Token]) -> bool:
    """Whether `parser` would take `tokens` in turn, tried on a copy (that shares tree values: for errors only)."""
    probe = parser.copy(deepcopy_values=False)
    try:
        for token in tokens:
            probe.feed_token(token)
    except UnexpectedToken:
        return False
    return True


def _describe(expected: set[str]) -> str:
    grammar = _grammar()
    if "_NL" in expected:
        expected = expected - {"$END"}  # "end of line" says it
    names = {"an expression"} if grammar.expression_start <= expected else set()
    rest = expected - grammar.expression_start if names else expected
    names = sorted(names | {grammar.described[t] for t in rest if t in grammar.described})
    if len(names) <= 2:
        return f"; expected {' or '.join(names)}" if names else ""
    return f"; expected one of {', '.join(names[:6])}{', …' if len(names) > 6 else ''}"


def _misspelt_keyword(name: Token | None, parser) -> EqnSyntaxError | None:
    """`name` where `parser` takes a keyword much like it, outside an expression (`parm`, `ouput`)."""
    accepted, grammar = parser.accepts(), _grammar()
    if name is None or name.type != "NAME" or grammar.expression_start <= accepted:
        return None
    close = difflib.get_close_matches(str(name), [grammar.keywords[t] for t in accepted if t in grammar.keywords], n=1)
    if not close:
        return None
    return EqnSyntaxError(f"unknown keyword '{name}'; did you mean '{close[0]}'?", _span_of_token(name))


def _unexpected(token: Token, fed: list[Token], expected: set[str], brackets: list[Token],
                hanging: tuple[Token, int] | None) -> EqnSyntaxError:
    """The error for `token`, which the parser refused after `fed`; `expected` is what it takes there."""
    grammar = _grammar()
    if hanging and _accepts(grammar.parser(), fed[hanging[1]:] + [token]):
        # the line after the one hanging on an operator reads as a statement: the operator is wrong
        line = (fed[hanging[1]:] + [token])[0].line
        return EqnSyntaxError(f"'{hanging[0]}' has no right operand: the next statement starts on line {line}",
                              _span_of_token(hanging[0]))
    if brackets and token.type in grammar.statement_start - grammar.expression_start:
        return EqnSyntaxError(f"'{brackets[-1]}' was never closed", _span_of_token(brackets[-1]))
    before, previous = grammar.parser(tokens=tuple(fed)), fed[-1] if fed else None
    if previous is not None and token.type in grammar.expression_start \
            and _accepts(before, [Token(grammar.terminal["*"], "*"), token]):
        what = "',' or operator" if _accepts(before, [Token(grammar.terminal[","], ","), token]) else "operator"
        return EqnSyntaxError(f"missing {what} between '{previous}' and '{token}'", _span_of_token(token))
    misspelt = _misspelt_keyword(token, before) or _misspelt_keyword(previous, grammar.parser(tokens=tuple(fed[:-1])))
    what = "end of file" if token.type == "$END" else f"'{token}'"
    return misspelt or EqnSyntaxError(f"unexpected {what}{_describe(expected)}", _span_of_token(token))


def _parse_tree(source: str):
    """Lex with Lark, feed the parser the newlines that end statements, and return the parse tree."""
    grammar = _grammar()
    parser, fed, brackets = grammar.parser(), [], []  # brackets: the open '(' and '['
    newline: Token | None = None  # the first newline since the last token, outside brackets
    hanging: tuple[Token, int] | None = None  # an operator a line ended on; where the next line starts in `fed`

    def feed(token: Token):
        try:
            result = parser.feed_token(token)
        except UnexpectedToken:  # `parser` is left where it found no action: it knows what it takes there
            raise _unexpected(token, fed, parser.accepts(), brackets, hanging) from None
        fed.append(token)
        return result

    for token in grammar.lark.lex(source):
        if token.type == "_NL":
            newline = newline or (None if brackets else token)
            continue
        if newline is not None:
            accepted = parser.accepts() if token.type in grammar.statement_start else set()
            operand_due = "_NL" not in accepted and "NAME" in accepted and fed[-1].type not in grammar.keywords
            hanging = (fed[-1], len(fed)) if operand_due else None
            if "_NL" in accepted:
                feed(newline)
            newline = None
        if token in _CLOSER:
            brackets.append(token)
        elif token in _CLOSER.values():
            if not brackets:
                raise EqnSyntaxError(f"unmatched '{token}'", _span_of_token(token))
            if _CLOSER[brackets[-1]] == token:
                brackets.pop()
        feed(token)
    last = next((t for t in reversed(fed) if t.type != "_NL"), None)
    line, column = (last.end_line, last.end_column) if last else (1, 1)
    return feed(Token("$END", "", len(source), line, column, line, column + 1))


def _span(meta) -> ast.Span:
    empty = getattr(meta, "empty", True)
    return ast.Span.unknown() if empty else ast.Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _node(make):
    """A transformer method that returns `make(span, children)`."""
    return lambda self, meta, children: make(_span(meta), children)


def _named(node, located: bool = False):
    """A method building `node(span, name, [name_span,] value)` from the children NAME and value."""
    return _node(lambda span, c: node(span, str(c[0]), *([_span_of_token(c[0])] if located else []), c[1]))


def _var(kind: str):
    return _node(lambda span, c: ast.VarDecl(span, kind, str(c[0]), _span_of_token(c[0]), c[1] or (),
                                             kind == "state" and c[2] is not None, c[2] if kind == "param" else None))


@v_args(meta=True)
class _ToAst(Transformer):
    """Parse tree → AST, one method per grammar rule, each given Lark's `meta` (positions) and the children."""

    def start(self, meta, statements):  # `const` and `coordinates` give lists of statements
        return tuple(s for item in statements for s in (item if isinstance(item, list) else [item]))

    model_decl = _node(lambda span, c: ast.ModelDecl(span, str(c[0]), c[1] is not None))
    const_decl = coordinates_decl = _node(lambda span, items: list(items))
    const_item, energy_decl, cost_decl = _named(ast.ConstDecl), _named(ast.EnergyDecl), _named(ast.CostDecl)
    tie_decl, let_decl, coordinate_item, map_eq = (
        _named(node, located=True) for node in (ast.TieDecl, ast.LetDecl, ast.CoordinateDecl, ast.MapEq))
    input_decl, target_decl, state_decl, param_decl = _var("input"), _var("target"), _var("state"), _var("param")
    shape = _node(lambda span, dims: tuple(dims))
    init = _node(lambda span, c: ast.Initializer(str(c[0]), tuple(a for a in c[1:] if a is not None), span))
    pair_decl = _node(lambda span, c: ast.PairDecl(span, str(c[0]), str(c[1]), _span_of_token(c[0]),
                                                   _span_of_token(c[1])))
    fn_decl = _node(lambda span, c: ast.FnDecl(span, str(c[0]), _span_of_token(c[0]), tuple(map(str, c[1:-1])), c[-1]))
    predict_decl, neg, transpose = (
        _node(lambda span, c, node=node: node(span, c[0])) for node in (ast.PredictDecl, ast.Neg, ast.Transpose))
    add, sub, mul, div, matmul, dot = (
        _node(lambda span, c, op=op: ast.BinOp(span, op, c[0], c[1])) for op in "+-*/@.")
    pow = _node(lambda span, c: ast.BinOp(span, "^", c[0], c[2]))
    beta = _node(lambda span, c: ast.Beta(span))
    var = _node(lambda span, c: ast.Name(_span_of_token(c[0]), str(c[0])))
    kwarg = _node(lambda span, c: ast.Keyword(str(c[0]), c[1], span))

    def flow_eq(self, meta, c):
        match = re.match(r"d[ \t]*([A-Za-z_][A-Za-z0-9_]*)", str(c[0]))
        line, column = c[0].line, c[0].column + match.start(1)
        return ast.FlowEq(_span(meta), match[1], ast.Span(line, column, line, column + len(match[1])), c[1])

    def number(self, meta, c):
        if float(c[0]) in (float("inf"), float("-inf")):
            raise EqnSyntaxError(f"number {c[0]} is too large", _span_of_token(c[0]))
        return ast.Number(_span_of_token(c[0]), float(c[0]), c[0].isdigit())

    def primed_var(self, meta, c):
        name = c[0].rstrip("'")
        node: ast.Expr = ast.Name(ast.Span(c[0].line, c[0].column, c[0].line, c[0].column + len(name)), name)
        for _ in range(len(c[0]) - len(name)):
            node = ast.Transpose(_span_of_token(c[0]), node)
        return node

    def call(self, meta, c):
        name, args = str(c[0]).rstrip("'"), [a for a in c[1:] if a is not None]
        positional = tuple(a for a in args if not isinstance(a, ast.Keyword))
        keywords = tuple(a for a in args if isinstance(a, ast.Keyword))
        return ast.Call(_span(meta), name, len(c[0]) - len(name), positional, keywords, _span_of_token(c[0]))


def _point(line: int, column: int) -> ast.Span:
    return ast.Span(line, column, line, column + 1)


def parse(source: str | bytes, filename: str = "<string>") -> ast.Module:
    """Parse `.eqn` text; raise `EqnSyntaxError` located in the file on any malformed input."""
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = source[: exc.start].count(b"\n") + 1
            column = len(source[source.rfind(b"\n", 0, exc.start) + 1: exc.start].decode("utf-8")) + 1
            raise EqnSyntaxError("file is not UTF-8 text", _point(line, column), filename=filename, source="") from None
    if "\x00" in source:
        offset = source.index("\x00")
        line, column = source.count("\n", 0, offset) + 1, offset - (source.rfind("\n", 0, offset) + 1) + 1
        raise EqnSyntaxError("file contains a NUL byte; is it a binary file?", _point(line, column),
                             filename=filename, source=source)
    try:
        statements = _ToAst().transform(_parse_tree(source))
    except UnexpectedCharacters as exc:
        error = EqnSyntaxError(f"unexpected character {source[exc.pos_in_stream]!r}", _point(exc.line, exc.column))
        raise error.located(filename, source) from None
    except EqnSyntaxError as exc:
        raise exc.located(filename, source) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, EqnError):
            raise exc.orig_exc.located(filename, source) from None
        raise
    return ast.Module(statements, filename, source)


def parse_file(path: str | Path) -> ast.Module:
    """Parse the `.eqn` file at `path` (read as bytes, so a file that is not UTF-8 is reported)."""
    path = Path(path)
    return parse(path.read_bytes(), str(path))
