"""The newline rule: a newline ends a statement where the statement can end and the next line can
start one; inside brackets, after an operator, or before a line that cannot start a statement
(`- b1.rho(h)`), the statement goes on."""

from __future__ import annotations

import pytest

from eqn.dsl import EqnSyntaxError, ast, parse


def kinds(source: str) -> list[str]:
    return [type(statement).__name__ for statement in parse(source).statements]


def error(source: str) -> tuple[int, int, str]:
    with pytest.raises(EqnSyntaxError) as info:
        parse(source)
    return info.value.span.line, info.value.span.column, info.value.message


def test_continuation_line_starting_with_an_operator():
    (energy,) = parse("energy E = 0.5*(h.h + o.o) - rho(h).(W1 @ x)\n         - b1.rho(h) - b2.rho(o)\n").statements
    assert isinstance(energy, ast.EnergyDecl)
    assert isinstance(energy.value, ast.BinOp) and energy.value.op == "-"
    assert (energy.value.span.line, energy.value.span.end_line) == (1, 2)


def test_line_ending_in_an_operator_continues_on_the_next():
    (cost,) = parse("cost C = 0.5 *\n    sum((o - y)^2)\n").statements
    assert cost.value.op == "*" and isinstance(cost.value.right, ast.Call) and cost.value.right.func == "sum"
    (flow,) = parse("d h/dt = -h + W @\n  x\n").statements
    assert isinstance(flow, ast.FlowEq) and flow.value.right.op == "@"


def test_newlines_inside_brackets_are_dropped():
    param, energy = parse("param W[n_h,\n        n_in] ~ normal(\n  0.1)\n"
                          "energy E = f(a,\n  b) + (c\n  + d)\n").statements
    name = lambda id: ast.Name(ast.Span.unknown(), id)  # noqa: E731 (spans do not take part in ==)
    assert param.shape == (name("n_h"), name("n_in")) and param.init.name == "normal"
    assert energy.value.left.args == (name("a"), name("b"))
    assert energy.value.right == ast.BinOp(ast.Span.unknown(), "+", name("c"), name("d"))


def test_a_name_inside_brackets_does_not_start_a_statement():
    (energy,) = parse("energy E = sum(h,\n  h)\n").statements
    assert len(energy.value.args) == 2


def test_two_statements_on_consecutive_lines():
    source = "state h[3]\nstate o[2] output\nd h/dt = -h\nd o/dt = -o\n"
    assert kinds(source) == ["VarDecl", "VarDecl", "FlowEq", "FlowEq"]


def test_map_statement_right_after_an_expression_line():
    statements = parse("let s = W @ x + b\nh <- s\nu2 <- h * 2\n").statements
    assert [type(s).__name__ for s in statements] == ["LetDecl", "MapEq", "MapEq"]
    assert statements[1].state == "h" and statements[2].state == "u2"


def test_blank_lines_comments_and_leading_newlines():
    assert kinds("\n\n# a comment\n\nmodel m   # trailing\n\n   \n# more\nstate h[3]\n\n\n") == ["ModelDecl", "VarDecl"]
    assert kinds("") == [] and kinds("\n# only a comment\n") == []


def test_crlf_line_endings():
    unix = "model m\nstate h[3] output\nenergy E = h.h\n  - sum(h)\ncost C = sum(h)\n"
    windows = unix.replace("\n", "\r\n")
    assert parse(windows).statements == parse(unix).statements
    assert [s.span.line for s in parse(windows).statements] == [1, 2, 3, 5]
    assert error("state h[3] output\r\nd h/dt = -h +\r\ncost C = h\r\n") == (
        2, 13, "'+' has no right operand: the next statement starts on line 3")


def test_no_trailing_newline():
    assert kinds("state h[3]\nh <- h + 1") == ["VarDecl", "MapEq"]
    assert error("state h[3]\nh <- W x") == (2, 8, "missing operator between 'W' and 'x'")
    assert error("cost C = 0.5 *") == (1, 15, "unexpected end of file; expected an expression")


def test_two_statements_on_one_line_are_an_error():
    assert error("state h[3] state o[2] output\n") == (1, 12, "unexpected 'state'; expected 'output' or end of line")


def test_operator_left_hanging_before_a_map_statement():
    message = "'+' has no right operand: the next statement starts on line 2"
    assert error("u1 <- W @ x +\nu2 <- u1\n") == (1, 13, message)


def test_name_on_the_line_after_an_operator_is_an_operand():
    # the line after `+` does not read as a statement, so it is the right operand gone wrong
    assert error("u1 <- W @ x +\n  b c\n") == (2, 5, "missing operator between 'b' and 'c'")
