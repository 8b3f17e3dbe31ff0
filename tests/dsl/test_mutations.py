"""Mutation testing of the error reporting: randomly damaged zoo models either still load or
raise `eqn.ErrorList` with located errors, never another exception (a traceback).

Loading is pure Python (parse, check, derive); no JAX compilation is involved.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eqn

MODELS = Path(__file__).resolve().parents[2] / "models"
ZOO = {path.name: path.read_text() for path in sorted(MODELS.glob("*.eqn"))}

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*'*|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|<-|\*\*|\S")
NUMBER = re.compile(r"(?<![A-Za-z0-9_.])[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
PUNCTUATION = list("()[],.=@*+-/^'~<>#:;{}$\"\\\t\n!?&|%`") + ["<-", "**", "d /dt", "'''"]
IDENTIFIERS = ["model", "const", "input", "target", "state", "param", "pair", "tie", "fn", "let", "energy",
               "cost", "predict", "output", "holomorphic", "beta", "sum", "mean", "softmax", "logsumexp", "dot",
               "outer", "transpose", "flatten", "conv", "conv_transpose", "softpool", "grad", "relu", "tanh",
               "sigmoid", "glorot", "zeros", "normal", "stride", "padding", "size", "tau", "d", "dt", "x", "y",
               "h", "o", "u1", "W1", "n_h", "rho", "sigma", "foo", "_", "d_h", "free"]
NUMBERS = ["0", "1", "2", "-1", "0.5", "3.0", "1e3", "1e-400", "1e999", "2.5e-3", "10", "99999999999999999999",
           "1000000", "0.0", "007"]


def _tokens(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in TOKEN.finditer(text)]


def _lines(text: str) -> list[str]:
    return text.split("\n")


@st.composite
def _mutate(draw, text: str) -> str:
    kind = draw(st.sampled_from([
        "delete_char", "duplicate_char", "swap_chars", "delete_token", "duplicate_token", "swap_tokens",
        "delete_line", "duplicate_line", "swap_lines", "insert_punctuation", "insert_identifier",
        "truncate", "replace_number", "replace_token",
    ]))
    n = len(text)
    index = lambda: draw(st.integers(0, max(0, n - 1)))  # noqa: E731
    if kind == "delete_char" and n:
        i = index()
        return text[:i] + text[i + 1:]
    if kind == "duplicate_char" and n:
        i = index()
        return text[:i] + text[i] + text[i:]
    if kind == "swap_chars" and n >= 2:
        i, j = sorted((index(), index()))
        return text[:i] + text[j] + text[i + 1:j] + text[i] + text[j + 1:] if i != j else text
    if kind in ("delete_token", "duplicate_token", "swap_tokens", "replace_token"):
        tokens = _tokens(text)
        if not tokens:
            return text
        a, b = tokens[draw(st.integers(0, len(tokens) - 1))]
        if kind == "delete_token":
            return text[:a] + text[b:]
        if kind == "duplicate_token":
            return text[:b] + draw(st.sampled_from(["", " "])) + text[a:b] + text[b:]
        if kind == "replace_token":
            return text[:a] + draw(st.sampled_from(IDENTIFIERS + PUNCTUATION + NUMBERS)) + text[b:]
        c, d = tokens[draw(st.integers(0, len(tokens) - 1))]
        if (a, b) > (c, d):
            (a, b), (c, d) = (c, d), (a, b)
        if b > c:
            return text
        return text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]
    if kind in ("delete_line", "duplicate_line", "swap_lines"):
        lines = _lines(text)
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "delete_line":
            del lines[i]
        elif kind == "duplicate_line":
            lines.insert(i, lines[i])
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    if kind in ("insert_punctuation", "insert_identifier"):
        i = draw(st.integers(0, n))
        pool = PUNCTUATION if kind == "insert_punctuation" else IDENTIFIERS
        word = draw(st.sampled_from(pool) | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True))
        sep = draw(st.sampled_from(["", " "]))
        return text[:i] + sep + word + sep + text[i:]
    if kind == "truncate":
        return text[:draw(st.integers(0, n))]
    if kind == "replace_number":
        numbers = list(NUMBER.finditer(text))
        if not numbers:
            return text
        m = numbers[draw(st.integers(0, len(numbers) - 1))]
        return text[:m.start()] + draw(st.sampled_from(NUMBERS)) + text[m.end():]
    return text


@st.composite
def mutated_models(draw) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(ZOO)))
    text = ZOO[name]
    for _ in range(draw(st.integers(1, 3))):
        text = draw(_mutate(text))
    return name, text


def _check_load(text: str) -> None:
    if "\n" not in text:  # a one-line string without '=' would be taken for a path
        text += "\n"
    try:
        eqn.load(text)
    except eqn.ErrorList as exc:
        assert exc.errors, "an ErrorList without errors"
        lines = _lines(text)
        for error in exc.errors:
            line, column = error.span.line, error.span.column
            assert 1 <= line <= len(lines), (line, error.message)
            assert 1 <= column <= len(lines[line - 1]) + 1, (line, column, error.message)
            rendered = error.render()
            assert rendered.startswith(f"<string>:{line}:{column}: error: "), rendered
            assert "Traceback" not in rendered
        assert re.match(r"<string>:\d+:\d+: error: ", exc.render())


def test_zoo_loads_unmutated():
    for name, text in ZOO.items():
        eqn.load(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_models())
def test_mutated_zoo_model_loads_or_reports_located_errors(case):
    _name, text = case
    _check_load(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(ZOO)), st.data())
def test_truncated_zoo_model_reports_located_errors(name, data):
    text = ZOO[name]
    _check_load(text[:data.draw(st.integers(0, len(text)))])
