"""The function library a model calls by name: every registered operation with a signature, and
`grad`, which the checker differentiates at compile time."""

from __future__ import annotations

from . import _elementwise, _tensor_ops  # noqa: F401  (they register the operations' records)
from ._ir import OPERATIONS, Operation

COMPILE_TIME = frozenset({"grad"})


def library() -> dict[str, Operation]:
    """The library's functions by the name a model calls them (Python functions excluded)."""
    return {(record.signature.name or name): record for name, record in OPERATIONS.items()
            if record.signature is not None and not name.startswith("py:")}


def library_names() -> frozenset[str]:
    """Every name of the library, `grad` included: names a model may not declare."""
    return frozenset(library()) | COMPILE_TIME
