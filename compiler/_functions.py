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

from ._algebra import mul
from ._ir import Node, Op, Operation, ShapeMismatch, Signature, broadcast_shapes, fmt_shape, op, register
from ._library import library_names
from ._print import call_notation
from ._tensor_ops import pullback

Shape = tuple[int, ...]


@dataclass(frozen=True)
class PythonFunction:
    """A JAX function registered under a name that models may call (see the module docstring)."""

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

    def result_shape(self, shapes: list[Shape]) -> Shape:
        """The shape of a call on arguments of `shapes`: the shape function's, or the broadcast
        shape; raises `ShapeMismatch` with the reason."""
        if self.shape is None:
            shape: Shape = ()
            for s in shapes:
                try:
                    shape = broadcast_shapes(shape, s)
                except ShapeMismatch as exc:
                    raise ShapeMismatch(f"arguments of '{self.name}': {exc}") from None
            return shape
        try:
            return tuple(int(d) for d in self.shape(*shapes))
        except Exception as exc:  # the user's shape function refused the arguments
            raise ShapeMismatch(f"shape function of '{self.name}' refused argument shapes "
                                f"{', '.join(fmt_shape(s) for s in shapes)}: {exc}") from None


def _diagonal_of(fn: Callable) -> Callable:
    return lambda z: jax.jvp(fn, (z,), (jnp.ones_like(z),))[1]


_REGISTRY: dict[str, PythonFunction] = {}


def register_function(name: str, fn: Callable, *, holomorphic: bool, shape: Callable[..., Shape] | None = None,
                      arity: int | None = None, elementwise: bool = False) -> PythonFunction:
    """Make `fn` callable from `.eqn` files as `name(...)`.

    Args:
        name: the name models call it by (an identifier, not one of the library's).
        fn: a JAX-traceable function of per-sample arrays (no batch axis).
        holomorphic: whether fn is complex-differentiable; models calling a non-holomorphic
            function are refused by holomorphic estimators.
        shape: `shape(*arg_shapes)` gives the result shape; by default the broadcast shape of
            the arguments.
        arity: the number of arguments, if fixed.
        elementwise: a function of one argument whose output component i depends on input
            component i alone, so that its derivative is the function `name'`.

    Returns:
        The registered `PythonFunction`.
    """
    if not name.isidentifier():
        raise ValueError(f"function name must be an identifier, got {name!r}")
    if name in library_names():
        raise ValueError(f"'{name}' is a function of the language's library; register yours under another name")
    if elementwise and (shape is not None or arity not in (None, 1)):
        raise ValueError(f"'{name}': an elementwise function takes one argument and keeps its shape")
    entry = PythonFunction(name, fn, bool(holomorphic), shape, 1 if elementwise else arity, bool(elementwise))
    _REGISTRY[name] = entry
    if elementwise:
        _register_derivative(entry, 0)
    else:
        register(Operation(entry.op_name, lambda values, node: entry.fn(*values), pullback,
                           holomorphic=entry.holomorphic, render=lambda node: call_notation(node, entry.name),
                           signature=Signature(entry.arity, lambda args, keywords, span: op(
                               entry.op_name, tuple(args), entry.result_shape([a.shape for a in args]),
                               (("name", entry.name),), span))))
    return entry


def _register_derivative(entry: PythonFunction, order: int) -> None:
    """The operation f^(order), elementwise, whose cotangent is f^(order+1)·ct: registered as far
    as derivations reach."""

    def vjp(node: Op, ct: Node) -> tuple[Node]:
        (arg,) = node.args
        return (mul(derivative_node(entry, arg, order + 1, node.span), ct),)

    name = entry.name + "'" * order
    register(Operation(entry.derivative_op_name(order), lambda values, node: entry.derivative(order)(*values), vjp,
                       holomorphic=entry.holomorphic, elementwise=True, render=lambda node: call_notation(node, name),
                       signature=Signature(1, lambda args, kw, span: derivative_node(entry, args[0], order, span))))


def derivative_node(entry: PythonFunction, arg: Node, order: int, span=None) -> Node:
    """f^(order)(arg) for an elementwise registered function f."""
    _register_derivative(entry, order)
    return op(entry.derivative_op_name(order), (arg,), arg.shape, (("name", entry.name),), span)


def lookup(name: str) -> PythonFunction | None:
    """The Python function registered under `name`, if any."""
    return _REGISTRY.get(name)
