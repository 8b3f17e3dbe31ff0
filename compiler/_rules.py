"""The learning rule of every parameter, derived symbolically, with the populations it reads and
whether it is local."""

from __future__ import annotations

from dataclasses import dataclass

from ._algebra import add, neg
from ._derive import vjp
from ._ir import Const, Node, Op, StructuralKeys, Var, const, is_zero, substitute, walk, zeros
from ._print import render


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
        terms = []
        if not is_zero(self.expression) or self.cost_expression is None:
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
        self.aliases = aliases  # a coordinate's name → its state
        self.key = StructuralKeys()
        owners: dict[int, set[str]] = {}
        for state, root in views.items():
            for node in walk(root):
                if isinstance(node, Op) and node.op not in ("named", "broadcast"):
                    owners.setdefault(self.key(node), set()).add(state)
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
                owner = self.owner.get(self.key(node))
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
