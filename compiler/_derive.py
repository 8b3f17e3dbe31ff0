"""Symbolic derivations on the IR: reverse-mode differentiation, the flow of an energy, the nudge
from the cost, and the blocks of a sweep. The learning rules (`_rules.py`) use the same `vjp`.

`vjp(root, wrt, cotangent)` walks the DAG once from the root and applies each operation's VJP
rule, from its record (`_tensor_ops.py`, `_elementwise.py`).
"""

from __future__ import annotations

from ._algebra import add, div, mul, neg
from ._ir import OPERATIONS, Node, Op, Var, const, free_vars, walk, zeros


def vjp(root: Node, wrt: set[str], cotangent: Node) -> dict[str, Node]:
    """Cotangents of `root` with respect to the leaves (or let bindings) named in `wrt`.

    For a scalar root and a cotangent of 1 this is the gradient; for complex arguments it is the
    holomorphic derivative (no conjugation), as EP with complex β needs.
    """
    order = walk(root)
    relevant: set[int] = set()
    for node in order:
        if _is_target(node, wrt) or any(a.uid in relevant for a in getattr(node, "args", ())):
            relevant.add(node.uid)
    result: dict[str, Node] = {}
    if root.uid not in relevant:
        return result
    pending: dict[int, Node] = {root.uid: cotangent}
    for node in reversed(order):
        ct = pending.pop(node.uid, None)
        if ct is None:
            continue
        if _is_target(node, wrt):
            name = node.name if isinstance(node, Var) else node.attr("name")
            result[name] = add(result[name], ct) if name in result else ct
            continue
        if not isinstance(node, Op):
            continue
        rule = OPERATIONS[node.op].vjp
        for arg, arg_ct in zip(node.args, rule(node, ct)):
            if arg_ct is None or arg.uid not in relevant:
                continue
            pending[arg.uid] = add(pending[arg.uid], arg_ct) if arg.uid in pending else arg_ct
    return result


def _is_target(node: Node, wrt: set[str]) -> bool:
    if isinstance(node, Var):
        return node.name in wrt
    return isinstance(node, Op) and node.op == "named" and node.attr("name") in wrt


def gradient(root: Node, name: str, shape) -> Node:
    """∂root/∂name for a scalar root (zeros if root does not depend on it)."""
    return vjp(root, {name}, const(1.0)).get(name, zeros(shape))


BETA = Var((), name="beta", kind="beta")


def energy_flow(energy: Node, states: dict[str, tuple]) -> dict[str, Node]:
    """du/dt = −∂E/∂u for every state (the gradient flow of an energy)."""
    grads = vjp(energy, set(states), const(1.0))
    return {s: neg(grads.get(s, zeros(shape))) for s, shape in states.items()}


def nudge_terms(cost: Node, states: dict[str, tuple], coordinates: dict[str, Node] | None = None,
                slopes: dict[str, Node] | None = None) -> dict[str, Node]:
    """−β ∂C/∂u: the teaching signal a cost adds to each state's dynamics. For a state with
    coordinates s = φ(u) it is −β ∂C/∂s, so that φ'(u)⊙F_β, the field EP differentiates, moves
    by −β ∂C/∂u (homeostasis Definition 1; App. E.2 nudges the output by −β ∂C/∂σ(u_L))."""
    coordinates, slopes = coordinates or {}, slopes or {}
    names = {s: node.attr("name") for s, node in coordinates.items()}
    grads = vjp(cost, set(states) | set(names.values()), const(1.0))
    terms = {}
    for s in states:
        g = grads.get(s)
        if s in names:
            through = grads.get(names[s])
            direct = None if g is None else div(g, slopes[s])  # a cost that reads u besides φ(u)
            g = through if direct is None else direct if through is None else add(through, direct)
        if g is not None:
            terms[s] = neg(mul(BETA, g))
    return terms


def sweep_blocks(field: dict[str, Node]) -> tuple[tuple[str, ...], ...]:
    """The states grouped into blocks that a block Gauss–Seidel sweep updates one after another:
    no state reads another state of its own block (a greedy colouring of the graph "s reads t",
    in declaration order). A layered network gets two blocks, odd and even layers; a state that
    reads every other state gets a block of its own."""
    reads = {s: set(free_vars(f)) & set(field) - {s} for s, f in field.items()}
    colour: dict[str, int] = {}
    for s in field:
        taken = {colour[t] for t in colour if t in reads[s] or s in reads[t]}
        colour[s] = next(c for c in range(len(field)) if c not in taken)
    return tuple(tuple(s for s in field if colour[s] == c) for c in range(max(colour.values(), default=-1) + 1))
