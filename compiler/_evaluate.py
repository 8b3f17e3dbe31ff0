"""The IR evaluated with `jax.numpy`, one sample at a time: pure functions of the model.

Evaluation walks the IR while JAX traces, so under `jax.jit` the interpretation costs nothing at
run time: XLA sees only the array operations, each given by its operation's record.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ._ir import OPERATIONS, Const, Node, Var, Zero, walk


def evaluate_many(roots: dict[str, Node], env: dict[str, Any], known: dict[int, Any] | None = None) -> dict[str, Any]:
    """Values of several IR roots that share sub-expressions, on one sample.

    Args:
        roots: the expressions, by any name.
        env: the value of every leaf the roots read, by name (a state's response dβ(u) under
            "d:u").
        known: values already computed, by node uid (such as the input drive of a phase).
    """
    memo: dict[int, Any] = dict(known or {})
    for root in roots.values():
        for node in walk(root):
            if node.uid in memo:
                continue
            if isinstance(node, Const):
                memo[node.uid] = node.value
            elif isinstance(node, Zero):
                memo[node.uid] = jnp.zeros(node.shape)
            elif isinstance(node, Var):
                memo[node.uid] = env["d:" + node.name if node.kind == "cotangent" else node.name]
            else:
                memo[node.uid] = OPERATIONS[node.op].evaluate([memo[a.uid] for a in node.args], node)
    return {name: memo[root.uid] for name, root in roots.items()}


def evaluate(root: Node, env: dict[str, Any]) -> Any:
    """The value of one IR expression on one sample (see `evaluate_many`)."""
    return evaluate_many({"_": root}, env)["_"]
