"""Every ```eqn block of docs/LANGUAGE.md is a complete model that the compiler accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import eqn

DOC = Path(__file__).resolve().parents[2] / "docs" / "LANGUAGE.md"
_FENCE = re.compile(r"^```eqn[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[int, str]]:
    """(line of the opening fence, source) of every ```eqn block."""
    text = DOC.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _FENCE.finditer(text)]


BLOCKS = _blocks()


def test_enough_blocks():
    assert len(BLOCKS) >= 5, f"expected at least 5 ```eqn blocks in {DOC}, found {len(BLOCKS)}"


@pytest.mark.parametrize("line, source", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_block_loads(line, source):
    assert "\n" in source  # eqn.load treats a string with a newline as source text
    try:
        program = eqn.load(source)
    except eqn.ErrorList as exc:
        pytest.fail(f"```eqn block at {DOC.name}:{line} does not check:\n{exc.render()}")
    assert program.states and program.output is not None
