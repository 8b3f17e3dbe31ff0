"""The way out to Python: functions written in JAX that a model may call by name.

    eqn.register_function("gelu_c", my_jax_fn, holomorphic=False)

The function receives per-sample arrays (one sample, no batch axis) and must be traceable by JAX.
Its derivative comes from `jax.vjp`, so learning rules through it print as `∂name/∂#k(…)ᵀ·…`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ._ir import register_op

Shape = tuple[int, ...]


@dataclass(frozen=True)
class PythonFunction:
    name: str
    fn: Callable
    holomorphic: bool
    shape: Callable[..., Shape] | None = None
    arity: int | None = None

    @property
    def op_name(self) -> str:
        return "py:" + self.name


_REGISTRY: dict[str, PythonFunction] = {}


def register_function(name: str, fn: Callable, *, holomorphic: bool,
                      shape: Callable[..., Shape] | None = None, arity: int | None = None) -> PythonFunction:
    """Make `fn` callable from `.eqn` files as `name(...)`.

    `holomorphic` declares whether fn is complex-differentiable (models calling a non-holomorphic
    function are refused by holomorphic estimators). `shape(*arg_shapes)` gives the result shape;
    by default the result has the broadcast shape of the arguments (an elementwise function).
    """
    from ._library import pullback

    if not name.isidentifier():
        raise ValueError(f"function name must be an identifier, got {name!r}")
    entry = PythonFunction(name, fn, bool(holomorphic), shape, arity)
    _REGISTRY[name] = entry
    register_op(entry.op_name, holomorphic=entry.holomorphic, vjp=pullback)
    return entry


def lookup(name: str) -> PythonFunction | None:
    return _REGISTRY.get(name)


def registered() -> dict[str, PythonFunction]:
    return dict(_REGISTRY)
