"""The operation registry against the language reference: every function a model may call has
its row in docs/LANGUAGE.md §7 with the right holomorphy mark, and every row names a function;
each record is complete; the compiled module's attributes are the names a param may not take."""

from __future__ import annotations

import re
from pathlib import Path

from eqn.compiler import MODULE_ATTRIBUTES
from eqn.compiler._ir import OPERATIONS
from eqn.compiler._library import COMPILE_TIME, library

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "LANGUAGE.md"


def _documented() -> dict[str, bool]:
    """name → holomorphic, from the function table of §7."""
    text = REFERENCE.read_text(encoding="utf-8")
    section = text[text.index("## 7. The function library"):text.index("## 8.")]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([a-z_]+)\(", cells[0]):
            rows[name] = {"✓": True, "✗": False}[cells[1]]
    return rows


def test_the_table_is_read():
    assert len(_documented()) >= 25


def test_the_reference_lists_exactly_the_library():
    callable_ = {name: record.holomorphic for name, record in library().items()}
    callable_.update({name: True for name in COMPILE_TIME})
    assert _documented() == callable_


def test_every_record_has_its_rules():
    for name, record in OPERATIONS.items():
        assert callable(record.evaluate) and callable(record.vjp), name
        if record.signature is not None:
            assert callable(record.signature.build), name


def test_a_param_may_not_take_a_name_of_the_compiled_module():
    from eqn.runtime import EqnModel

    attributes = {name for name in dir(EqnModel) if not name.startswith("__")}
    attributes |= set(EqnModel.__dataclass_fields__)
    assert attributes == set(MODULE_ATTRIBUTES)
