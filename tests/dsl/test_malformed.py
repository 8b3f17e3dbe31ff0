"""Error reporting on malformed models: every file in tests/data/malformed states the errors it
must produce, one `# expect: LINE:COL: MESSAGE` comment line each, and `eqn.load` must report
exactly those (all of them in one pass), located and rendered with the offending source line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import eqn

MALFORMED = Path(__file__).resolve().parents[1] / "data" / "malformed"
FILES = sorted(MALFORMED.glob("*.eqn"))
EXPECT = re.compile(r"# expect: (\d+):(\d+): (.+)")


def expected_errors(path: Path) -> list[tuple[int, int, str]]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# expect:"):
            match = EXPECT.fullmatch(line.rstrip())
            assert match, f"{path.name}: malformed expectation {line!r}"
            found.append((int(match.group(1)), int(match.group(2)), match.group(3)))
    return found


def load_errors(path: Path) -> eqn.ErrorList:
    with pytest.raises(eqn.ErrorList) as info:
        eqn.load(path)
    return info.value


def test_enough_malformed_files():
    assert len(FILES) >= 25
    assert all(expected_errors(path) for path in FILES), "every file must state its expected errors"


def test_several_errors_in_one_pass():
    assert sum(len(expected_errors(path)) > 1 for path in FILES) >= 3


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_errors_are_exactly_the_expected_ones(path):
    errors = load_errors(path).errors
    assert [(e.span.line, e.span.column, e.message) for e in errors] == expected_errors(path)
    assert all(e.severity == "error" for e in errors)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_render_shows_location_source_line_and_caret(path):
    source_lines = path.read_text(encoding="utf-8").splitlines()
    error_list = load_errors(path)
    for error in error_list.errors:
        line, column = error.span.line, error.span.column
        rendered = error.render().split("\n")
        assert rendered[0] == f"{path}:{line}:{column}: error: {error.message}"
        assert len(rendered) == 3, rendered
        assert rendered[1] == "    " + source_lines[line - 1].expandtabs(1)
        assert re.fullmatch(r" {4}" + " " * (column - 1) + r"\^+", rendered[2]), rendered[2]
        assert column - 1 + len(rendered[2].strip()) <= max(column, len(source_lines[line - 1]) + 1)
    whole = error_list.render()
    assert whole.startswith(f"{path}:")
    assert whole == "\n".join(error.render() for error in error_list.errors)
    assert str(error_list) == whole


def test_errors_come_in_source_order():
    for path in FILES:
        errors = load_errors(path).errors
        keys = [(e.span.line, e.span.column) for e in errors]
        assert keys == sorted(keys), path.name
