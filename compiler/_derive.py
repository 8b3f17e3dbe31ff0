"""Symbolic derivations on the IR: reverse-mode differentiation, the flow of an energy, the nudge
from the cost, and the learning rule of every parameter with its locality.

One mechanism serves all of them: `vjp(root, wrt, cotangent)` walks the DAG once from the root
and applies each operation's VJP rule (`_library.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _library  # noqa: F401  (registers the operations' derivative rules)
from ._ir import OPS, Const, Node, Op, Var, add, const, div, free_vars, mul, neg, substitute, walk, zeros


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
        rule = OPS[node.op].vjp
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


# ----------------------------------------------------------------------------- learning rules


@dataclass(frozen=True)
class Rule:
    """The learning rule of one parameter, as the compiler derived it.

    `expression` is −∂E/∂θ (energy form; the EP update is its difference between the nudged and
    the free equilibrium, divided by β: holomorphic-ep Eq. 2) or (∂F/∂θ)ᵀ·dβu (flow and map forms;
    `dβ(u)` is the response of state u to the nudge: homeostasis Eq. 6, vector-field Eq. 16).
    `cost_expression` is −∂C/∂θ at the free fixed point, for parameters the cost reads (a
    readout). Moving θ along the rule descends the loss.

    Locality: a rule is local when it reads at most the populations the synapse connects (two for
    a weight, one for a bias) and no other parameter. Quantities a neuron computes on its way to
    its own update (its net input) count as that neuron's; a `let` that reads parameters (an
    error neuron, say) is a population of its own.
    """

    param: str
    form: str
    expression: Node
    cost_expression: Node | None
    reads: tuple[str, ...]
    post: tuple[str, ...]
    pre: tuple[str, ...]
    other_params: tuple[str, ...]
    local: bool

    def text(self) -> str:
        from ._print import render
        terms = []
        if not _is_zero(self.expression) or self.cost_expression is None:
            body = render(self.expression)
            terms.append(f"[ {body} ]^β − [ {body} ]^0" if self.form == "energy" else body)
        if self.cost_expression is not None:
            terms.append(f"[ {render(self.cost_expression)} ]^0 (from the cost)")
        return f"Δ{self.param} ∝ " + " + ".join(terms)

    def reads_text(self) -> str:
        parts = []
        for name in self.reads:
            role = " (post)" if name in self.post else " (pre)" if name in self.pre else ""
            parts.append(name + role)
        parts += [name + " (param)" for name in self.other_params]
        verdict = "local" if self.local else "not local"
        return f"reads {', '.join(parts) if parts else 'nothing'}: {verdict}"


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


def _is_zero(node: Node) -> bool:
    from ._ir import is_zero
    return is_zero(node)


def derive_rules(form: str, params: dict[str, tuple], energy: Node | None, dynamics: dict[str, Node],
                 states: dict[str, tuple], cost: Node, views: dict[str, Node],
                 coordinates: dict[str, str] | None = None) -> dict[str, Rule]:
    """Rules of every free parameter. `views[s]` is the free dynamics of state s, used to tell
    which quantities are computed at neuron s. `coordinates[s]` names the coordinate φ(u_s) of a
    state that has one: its rule reads dβ(φ(u_s)) = φ'(u_s)·dβu_s, since EP differentiates
    φ'(u)⊙F."""
    coordinates = coordinates or {}
    free = set(params)
    if form == "energy":
        grads = vjp(energy, free, const(1.0))
        expressions = {p: neg(grads.get(p, zeros(shape))) for p, shape in params.items()}
    else:
        expressions = {p: zeros(shape) for p, shape in params.items()}
        for state, field in dynamics.items():
            free_field = substitute(field, {"beta": zeros(())})
            cotangent = Var(states[state], name=coordinates.get(state, state), kind="cotangent")
            for p, g in vjp(free_field, free, cotangent).items():
                expressions[p] = add(expressions[p], g)
    cost_grads = {p: neg(g) for p, g in vjp(cost, free, const(1.0)).items()}
    index = _NeuronIndex(views, {name: state for state, name in coordinates.items()})
    return {p: _locality(p, len(params[p]), form, e, cost_grads.get(p), index) for p, e in expressions.items()}


class _NeuronIndex:
    """Maps each sub-expression of a state's own dynamics to that state."""

    def __init__(self, views: dict[str, Node], aliases: dict[str, str]):
        from ._print import render
        self.render = render
        self.aliases = aliases  # a coordinate's name → its state
        owners: dict[str, set[str]] = {}
        for state, root in views.items():
            for node in walk(root):
                if isinstance(node, Op) and node.op not in ("named", "broadcast"):
                    owners.setdefault(render(node), set()).add(state)
        self.owner = {key: next(iter(s)) for key, s in owners.items() if len(s) == 1}

    def _composite(self, node: Node, param: str) -> bool:
        """Whether an expression combines several populations or parameters (a net input)."""
        leaves = {(v.name, v.kind) for v in walk(node) if isinstance(v, Var) and v.kind not in ("local", "beta")}
        return len(leaves) > 1 and any(kind == "param" for _, kind in leaves)

    def populations(self, root: Node, param: str) -> tuple[list[str], list[str]]:
        """(neuron populations, other parameters) that an expression reads."""
        neurons: list[str] = []
        others: list[str] = []

        def add_to(lst, name):
            if name not in lst:
                lst.append(name)

        def visit(node: Node):
            if isinstance(node, Var):
                if node.kind in ("state", "input", "target", "cotangent"):
                    add_to(neurons, self.aliases.get(node.name, node.name))
                elif node.kind == "param" and node.name != param:
                    add_to(others, node.name)
                return
            if not isinstance(node, Op):
                return
            if node.op not in ("named", "broadcast"):
                owner = self.owner.get(self.render(node))
                if owner is not None and self._composite(node, param):
                    add_to(neurons, owner)
                    return
            if node.op == "named":
                inner_neurons, inner_params = self.populations(node.args[0], param)
                if len(inner_neurons) == 1 and not inner_params:
                    add_to(neurons, inner_neurons[0])
                else:
                    add_to(neurons, node.attr("name"))
                return
            for arg in node.args:
                visit(arg)

        visit(root)
        return neurons, others


def _strip(node: Node) -> Node:
    while isinstance(node, Op) and (node.op == "neg" or (node.op == "mul" and isinstance(node.args[0], Const))):
        node = node.args[-1]
    return node


def _locality(param: str, ndim: int, form: str, expression: Node, cost_expression: Node | None,
              index: _NeuronIndex) -> Rule:
    reads, others = index.populations(expression, param)
    post: list[str] = []
    pre: list[str] = []
    core = _strip(expression)
    if isinstance(core, Op) and core.op == "outer":
        post, pre = index.populations(core.args[0], param)[0], index.populations(core.args[1], param)[0]
    elif isinstance(core, Op) and core.op == "vjp" and core.attr("of") == "conv" and core.attr("index") == 1:
        pre, post = index.populations(core.args[0], param)[0], index.populations(core.args[2], param)[0]
    populations = 2 if ndim >= 2 else 1
    local = len(reads) <= populations and not others
    if cost_expression is not None:
        cost_reads, cost_others = index.populations(cost_expression, param)
        reads = reads + [r for r in cost_reads if r not in reads]
        others = others + [o for o in cost_others if o not in others]
    return Rule(param, form, expression, cost_expression, tuple(reads), tuple(post), tuple(pre),
                tuple(sorted(others)), local)
