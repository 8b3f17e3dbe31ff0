"""The typed intermediate representation: immutable expression DAGs over per-sample tensors, and
the registry of operations.

Every node knows its shape and the source span it came from. Every operation has one record
(`Operation`) holding all that the compiler knows of it: evaluation, derivative, holomorphy,
elementwise-ness, how to rebuild it, how to print it and how a model calls it. The records are
written in `_tensor_ops.py` and `_elementwise.py` (and `_functions.py` for Python functions).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from ..dsl.ast import Span

Shape = tuple[int, ...]


class ShapeMismatch(Exception):
    """Raised by constructors and shape rules; the checker turns it into a located `EqnShapeError`,
    at the argument numbered `argument` when one is named, else at the whole expression."""

    def __init__(self, message: str, argument: int | None = None):
        super().__init__(message)
        self.argument = argument


# ----------------------------------------------------------------------------- nodes

_ids = itertools.count()


@dataclass(frozen=True, eq=False)
class Node:
    shape: Shape
    span: Span | None = field(default=None, compare=False, repr=False)
    uid: int = field(default_factory=lambda: next(_ids), compare=False, repr=False)

    def __hash__(self):
        return self.uid

    def __eq__(self, other):
        return self is other

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(frozen=True, eq=False)
class Const(Node):
    """A real scalar constant."""

    value: float = 0.0


@dataclass(frozen=True, eq=False)
class Zero(Node):
    """A tensor of zeros; the additive identity that derivations produce."""


@dataclass(frozen=True, eq=False)
class Var(Node):
    """A leaf: kind is state, input, target, param, beta, cotangent (dβ of a state) or local."""

    name: str = ""
    kind: str = ""


@dataclass(frozen=True, eq=False)
class Op(Node):
    """An operation `op` on `args` with hashable static attributes `attrs`."""

    op: str = ""
    args: tuple[Node, ...] = ()
    attrs: tuple = ()

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default


def const(value: float) -> Const:
    return Const((), value=float(value))


def zeros(shape: Shape) -> Zero:
    return Zero(tuple(shape))


def is_const(node: Node, value: float | None = None) -> bool:
    return isinstance(node, Const) and (value is None or node.value == value)


def is_zero(node: Node) -> bool:
    return isinstance(node, Zero) or is_const(node, 0.0)


# ----------------------------------------------------------------------------- shapes


def broadcast_shapes(a: Shape, b: Shape) -> Shape:
    result = []
    for x, y in itertools.zip_longest(reversed(a), reversed(b), fillvalue=1):
        if x != y and 1 not in (x, y):
            raise ShapeMismatch(f"shapes {fmt_shape(a)} and {fmt_shape(b)} do not broadcast")
        result.append(max(x, y))
    return tuple(reversed(result))


def fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape else "scalar"


# ----------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class Keyword:
    """A keyword argument of a library call: its default (a number, or the name of an earlier
    keyword whose value it takes) and the kind of constant it must be: "positive integer",
    "non-negative integer" or "positive number"."""

    name: str
    default: float | str
    kind: str = "positive integer"


@dataclass(frozen=True)
class Signature:
    """How a `.eqn` model calls an operation by name: `arity` positional arguments (None: any
    number), `keywords`, and
    `build(args, keywords, span)`, the node for lowered arguments and evaluated keywords (raising
    `ShapeMismatch` for operands that do not fit)."""

    arity: int | None
    build: Callable[[list, dict, Span | None], "Node"]
    keywords: tuple[Keyword, ...] = ()
    name: str | None = None  # the name a model calls it by, when not the operation's (flatten)


@dataclass(frozen=True)
class Operation:
    """Everything the compiler knows about one operation, side by side.

    `evaluate(values, node)`: the operation on one sample in `jax.numpy`, from its arguments' values.
    `vjp(node, cotangent)`: one cotangent per argument, as IR (None where there is none).
    `holomorphic`: complex-differentiable (a model using it is refused for complex β).
    `elementwise`: output component i reads input component i only, so its Jacobian is diagonal.
    `rebuild(node, args)`: the node over new arguments, through the smart constructors; None keeps
      the attributes (and, for an elementwise operation, takes the arguments' broadcast shape).
    `render(node)`: its notation in printed rules, as (text, precedence) (see `_print.py`); None
      prints `name(arguments, keywords)`.
    `signature`: how a model calls it by name; None for operations that derivations produce.
    """

    name: str
    evaluate: Callable[[list, "Op"], Any]
    vjp: Callable[["Op", "Node"], tuple]
    holomorphic: bool = True
    elementwise: bool = False
    rebuild: Callable[["Op", tuple], "Node"] | None = None
    render: Callable[["Op"], tuple[str, int]] | None = None
    signature: Signature | None = None


OPERATIONS: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    """Add an operation's record to the registry (a later record of the same name replaces it)."""
    OPERATIONS[operation.name] = operation
    return operation


def operation(name: str) -> Operation:
    """The record of the operation `name`."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise KeyError(f"no operation '{name}' is registered") from None


def op(name: str, args: tuple[Node, ...], shape: Shape, attrs: tuple = (), span: Span | None = None) -> Op:
    """A node of operation `name`, built as given (no shape check, no simplification)."""
    return Op(tuple(shape), span, op=name, args=tuple(args), attrs=tuple(attrs))


# ----------------------------------------------------------------------------- traversal


def children(node: Node) -> tuple[Node, ...]:
    return node.args if isinstance(node, Op) else ()


def walk(root: Node):
    """Each node of the DAG once, children before parents."""
    seen: set[int] = set()
    order: list[Node] = []
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node.uid in seen:
            continue
        seen.add(node.uid)
        stack.append((node, True))
        for child in children(node):
            if child.uid not in seen:
                stack.append((child, False))
    return order


def free_vars(root: Node) -> dict[str, Var]:
    """Leaves reached from root, by name (call bodies are closed over their own parameter)."""
    found: dict[str, Var] = {}
    for node in walk(root):
        if isinstance(node, Var) and node.kind != "local":
            found.setdefault(node.name, node)
    return found


def is_elementwise(node: Node) -> bool:
    """Whether a node's operation keeps components apart (a leaf counts as such)."""
    return not isinstance(node, Op) or node.op in ("call", "named") or OPERATIONS[node.op].elementwise


def elementwise_throughout(root: Node) -> bool:
    """Whether every operation under `root` keeps components apart (broadcasts included), so
    that `root` is an elementwise function of its leaves."""
    return all(is_elementwise(node) or (isinstance(node, Op) and node.op == "broadcast") for node in walk(root))


def reads_elementwise(root: Node, name: str, absent: set[str]) -> bool:
    """Whether `root` reads none of the leaves in `absent` and reads the leaf `name` only through
    elementwise operations of its shape, so that its Jacobian in `name` is diagonal."""
    reads: dict[int, bool] = {}
    ok: dict[int, bool] = {}
    shape = None
    for node in walk(root):
        if isinstance(node, Var):
            reads[node.uid] = node.name == name or node.name in absent
            ok[node.uid] = node.name not in absent
            if node.name == name:
                shape = node.shape
            continue
        args = children(node)
        reads[node.uid] = any(reads[a.uid] for a in args)
        if not reads[node.uid]:
            ok[node.uid] = True
            continue
        ok[node.uid] = is_elementwise(node) and node.shape == shape and all(ok[a.uid] for a in args)
    return ok[root.uid] and (shape is None or root.shape == shape)


def substitute(root: Node, mapping: dict[str, Node]) -> Node:
    """Replace leaves named in `mapping`, rebuilding through the smart constructors."""
    memo: dict[int, Node] = {}
    for node in walk(root):
        if isinstance(node, Var):
            memo[node.uid] = mapping.get(node.name, node)
        elif isinstance(node, Op):
            args = tuple(memo[a.uid] for a in node.args)
            memo[node.uid] = node if all(x is y for x, y in zip(args, node.args)) else rebuild(node, args)
        else:
            memo[node.uid] = node
    return memo[root.uid]


def rebuild(node: Op, args: tuple[Node, ...]) -> Node:
    """`node` over new arguments, as its record says."""
    record = OPERATIONS[node.op]
    if record.rebuild is not None:
        return record.rebuild(node, args)
    shape = node.shape
    if record.elementwise:
        shape = ()
        for arg in args:
            shape = broadcast_shapes(shape, arg.shape)
    return Op(shape, node.span, op=node.op, args=args, attrs=node.attrs)


class StructuralKeys:
    """Numbers for sub-expressions, equal exactly when they are structurally equal (the same
    operations, attributes and leaves, whatever their spans and uids), across every expression
    this object is asked about: `keys(node)`."""

    def __init__(self):
        self._table: dict[tuple, int] = {}
        self._keys: dict[int, int] = {}

    def __call__(self, root: Node) -> int:
        if root.uid in self._keys:  # a sub-expression met before: no second walk of it
            return self._keys[root.uid]
        for node in walk(root):
            if node.uid not in self._keys:
                self._keys[node.uid] = self._table.setdefault(self._describe(node), len(self._table))
        return self._keys[root.uid]

    def _attribute(self, value):
        if isinstance(value, Node):
            return ("node", self(value))
        if isinstance(value, tuple):
            return tuple(self._attribute(v) for v in value)
        return value

    def _describe(self, node: Node) -> tuple:
        if isinstance(node, Const):
            return ("const", node.value)
        if isinstance(node, Var):
            return ("var", node.name, node.kind, node.shape)
        if isinstance(node, Op):
            return ("op", node.op, node.shape, self._attribute(node.attrs), tuple(self._keys[a.uid] for a in node.args))
        return ("zero", node.shape)


def state_independent(roots: dict[str, Node]) -> dict[str, Node]:
    """The largest operations under `roots` that do not read the state: within one phase (fixed
    input, target and β) they are constants, such as the input drive W·x. Keyed by uid."""
    reads_state: dict[int, bool] = {}
    for root in roots.values():
        for node in walk(root):
            if node.uid not in reads_state:
                reads_state[node.uid] = (node.kind in ("state", "cotangent") if isinstance(node, Var)
                                         else any(reads_state[a.uid] for a in children(node)))
    frontier: dict[str, Node] = {}
    for root in roots.values():
        candidates = [root] + [a for node in walk(root) if reads_state[node.uid] for a in children(node)]
        for node in candidates:
            if isinstance(node, Op) and not reads_state[node.uid]:
                frontier[str(node.uid)] = node
    return frontier
