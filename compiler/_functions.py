"""The way out to Python: functions written in JAX that a model may call by name.

    eqn.register_function("gelu_c", my_jax_fn, holomorphic=False)

The function receives per-sample arrays (one sample, no batch axis) and must be traceable by JAX.
Its derivative comes from JAX. A function declared `elementwise=True` (one argument, each output
component a function of the same input component only: an activation, a device's measured
response) has a diagonal Jacobian: rules through it print as `name'(…)*dβ(u)`, like those through
the library's tanh, and a model may write `name'(u)` or use it as a coordinate. Any other
function's rules print its pullback, `∂name/∂#k(…)ᵀ·…`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from ._ir import Node, Op, mul, op, register_op

Shape = tuple[int, ...]


@dataclass(frozen=True)
class PythonFunction:
    name: str
    fn: Callable
    holomorphic: bool
    shape: Callable[..., Shape] | None = None
    arity: int | None = None
    elementwise: bool = False

    @property
    def op_name(self) -> str:
        return "py:" + self.name

    def derivative_op_name(self, order: int) -> str:
        return self.op_name + "'" * order

    def derivative(self, order: int) -> Callable:
        """f^(order) at every component of its argument: the Jacobian of an elementwise function
        is diagonal, so a JVP along ones reads off the whole diagonal at once."""
        fn = self.fn
        for _ in range(order):
            fn = _diagonal_of(fn)
        return fn


def _diagonal_of(fn: Callable) -> Callable:
    return lambda z: jax.jvp(fn, (z,), (jnp.ones_like(z),))[1]


def split_op_name(op_name: str) -> tuple[PythonFunction, int]:
    """The registered function and derivative order of an operation `py:name'…'`."""
    name = op_name[3:]
    base = name.rstrip("'")
    return _REGISTRY[base], len(name) - len(base)


_REGISTRY: dict[str, PythonFunction] = {}


def register_function(name: str, fn: Callable, *, holomorphic: bool, shape: Callable[..., Shape] | None = None,
                      arity: int | None = None, elementwise: bool = False) -> PythonFunction:
    """Make `fn` callable from `.eqn` files as `name(...)`.

    `holomorphic` declares whether fn is complex-differentiable (models calling a non-holomorphic
    function are refused by holomorphic estimators). `shape(*arg_shapes)` gives the result shape;
    by default the result has the broadcast shape of the arguments. `elementwise=True` declares
    a function of one argument whose output component i depends on input component i alone, so
    that its derivative is the function `name'` (see the module docstring).
    """
    from ._check import LIBRARY
    from ._library import pullback

    if not name.isidentifier():
        raise ValueError(f"function name must be an identifier, got {name!r}")
    if name in LIBRARY:
        raise ValueError(f"'{name}' is a function of the language's library; register yours under another name")
    if elementwise and (shape is not None or arity not in (None, 1)):
        raise ValueError(f"'{name}': an elementwise function takes one argument and keeps its shape")
    entry = PythonFunction(name, fn, bool(holomorphic), shape, 1 if elementwise else arity, bool(elementwise))
    _REGISTRY[name] = entry
    if elementwise:
        _register_derivative(entry, 0)
    else:
        register_op(entry.op_name, holomorphic=entry.holomorphic, vjp=pullback)
    return entry


def _register_derivative(entry: PythonFunction, order: int) -> None:
    """The operation f^(order), elementwise, whose cotangent is f^(order+1)·ct: registered as far
    as derivations reach."""

    def vjp(node: Op, ct: Node) -> tuple[Node]:
        _register_derivative(entry, order + 1)
        (arg,) = node.args
        return (mul(derivative_node(entry, arg, order + 1, node.span), ct),)

    register_op(entry.derivative_op_name(order), holomorphic=entry.holomorphic, vjp=vjp, elementwise=True)


def derivative_node(entry: PythonFunction, arg: Node, order: int, span=None) -> Node:
    """f^(order)(arg) for an elementwise registered function f."""
    _register_derivative(entry, order)
    return op(entry.derivative_op_name(order), (arg,), arg.shape, (("name", entry.name),), span)


def lookup(name: str) -> PythonFunction | None:
    return _REGISTRY.get(name)


def registered() -> dict[str, PythonFunction]:
    return dict(_REGISTRY)
