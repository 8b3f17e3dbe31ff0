"""Form checks: which form of dynamics the model uses and its equations, coordinates, cost,
prediction, ties and pairs, unused names and holomorphy. Each returns what it checked, lowered."""

from __future__ import annotations

from ..dsl.errors import EqnFormError, EqnHolomorphyError, EqnNameError, EqnShapeError
from . import _algebra as alg
from ._context import Context, Scope, a, suggest
from ._ir import Node, ShapeMismatch, broadcast_shapes, elementwise_throughout, fmt_shape, free_vars, zeros
from ._lower import let, lower, tie
from ._program import NonHolomorphic


def check_form(ctx: Context) -> str | None:
    """"energy", "flow" or "map", or None (reported) when there is no form or several."""
    d = ctx.decls
    kinds = sorted((items[0].span.line, kind, items[0]) for kind, items in
                   (("energy", d.energies), ("flow", d.flows), ("map", d.maps)) if items)
    if not kinds:
        ctx.error(EqnFormError, "no dynamics: write an energy ('energy E = …'), flow equations "
                  "('d h/dt = …') or maps ('h <- …')", ctx.model_span())
        return None
    first_line, first_kind, _ = kinds[0]
    for line, kind, stmt in kinds[1:]:
        ctx.error(EqnFormError, f"this {kind} mixes forms with the {first_kind} at line {first_line}; "
                  "a model uses one form of dynamics", stmt.span)
    for extra in d.energies[1:]:
        ctx.error(EqnFormError, f"a second energy (the first is at line {d.energies[0].span.line})", extra.span)
    if len(kinds) > 1:
        return None
    if not ctx.states:
        if not any(v.kind == "state" for v in d.variables.values()):
            ctx.error(EqnFormError, "the model declares no state", kinds[0][2].span)
        return None
    return first_kind


def check_energy(ctx: Context, scope: Scope) -> Node | None:
    """The energy, a scalar that reads every state."""
    decl = ctx.decls.energies[0]
    energy = lower(ctx, decl.value, scope)
    if energy is not None and energy.shape != ():
        ctx.error(EqnShapeError, f"the energy must be a scalar, got shape {fmt_shape(energy.shape)}; "
                  f"use sum(…) or '.'", decl.value.span)
        return None
    if energy is not None:
        reached = free_vars(energy)
        for s in ctx.states:
            if s not in reached:
                ctx.error(EqnFormError, f"state '{s}' does not appear in the energy, so it has no dynamics",
                          ctx.decls.variables[s].span)
    return energy


def check_equations(ctx: Context, form: str, scope: Scope) -> dict[str, Node]:
    """Each state's equation as written (flows and maps), broadcast to the state's shape; a state
    whose equation failed gets a scalar zero, so that later passes stay silent."""
    decls = ctx.decls
    written: dict[str, Node] = {}
    for eq in decls.flows if form == "flow" else decls.maps:
        if eq.state not in decls.variables:
            if eq.state not in decls.names:
                ctx.error(EqnNameError, f"undefined state '{eq.state}'{suggest(eq.state, ctx.states)}", eq.state_span)
            else:
                ctx.error(EqnFormError, f"'{eq.state}' is {a(decls.names[eq.state][0])}, not a state; "
                          "only states have dynamics", eq.state_span)
            lower(ctx, eq.value, Scope("dynamics"))
            continue
        if decls.variables[eq.state].kind != "state":
            ctx.error(EqnFormError, f"'{eq.state}' is {a(decls.variables[eq.state].kind)}, not a state; "
                      "only states have dynamics", eq.state_span)
            continue
        if eq.state in written:
            ctx.error(EqnFormError, f"state '{eq.state}' has a second equation", eq.state_span)
            continue
        ctx.used.add(eq.state)
        value = lower(ctx, eq.value, scope)
        if value is None or eq.state not in ctx.states:
            written[eq.state] = zeros(())
            continue
        target = ctx.states[eq.state]
        if value.shape != target:
            try:
                fits = broadcast_shapes(value.shape, target) == target
            except ShapeMismatch:
                fits = False
            if not fits:
                ctx.error(EqnShapeError, f"the equation of '{eq.state}' has shape {fmt_shape(value.shape)}, "
                          f"but '{eq.state}' is {fmt_shape(target)}", eq.value.span)
                written[eq.state] = zeros(())
                continue
            value = alg.broadcast(value, target)
        written[eq.state] = value
    for s in ctx.states:
        if s not in written:
            how = f"d {s}/dt = …" if form == "flow" else f"{s} <- …"
            ctx.error(EqnFormError, f"state '{s}' has no dynamics; add '{how}'", decls.variables[s].span)
    return written


def check_coordinates(ctx: Context, form: str | None) -> dict[str, Node]:
    """state → its coordinate φ(u) (a `named` node), for the `coordinates` the model declares.
    A coordinate must be an elementwise function of its one state, so that φ'(u) is a diagonal
    and EP's field φ'(u)⊙F(u) has the fixed points of F."""
    found: dict[str, Node] = {}
    owner: dict[str, str] = {}
    for name, decl in ctx.decls.coordinates.items():
        ctx.used.add(name)
        node = let(ctx, name)
        if node is None:
            continue
        if form == "energy":
            ctx.error(EqnFormError, "coordinates apply to flows and maps; an energy's gradient flow is already "
                      "what EP differentiates", decl.span)
            continue
        leaves = free_vars(node.args[0])
        states = [s for s in ctx.states if s in leaves]
        others = [f"{v.kind} '{v.name}'" for v in leaves.values() if v.kind != "state"]
        if len(states) != 1 or others:
            read = ", ".join([f"state '{s}'" for s in states] + others) or "nothing"
            ctx.error(EqnFormError, f"coordinate '{name}' must be a function of exactly one state and constants; "
                      f"it reads {read}", decl.value.span)
            continue
        state = states[0]
        if node.shape != ctx.states[state] or not elementwise_throughout(node.args[0]):
            ctx.error(EqnFormError, f"coordinate '{name}' must be an elementwise function of '{state}' "
                      f"(like sigma({state})), with the shape of '{state}'", decl.value.span)
            continue
        if state in owner:
            ctx.error(EqnFormError, f"state '{state}' already has the coordinate '{owner[state]}'", decl.name_span)
            continue
        owner[state] = name
        found[state] = node
    return found


def check_cost(ctx: Context) -> Node | None:
    """The cost: one, a scalar, reading some state."""
    costs = ctx.decls.costs
    for extra in costs[1:]:
        ctx.error(EqnFormError, f"a second cost (the first is at line {costs[0].span.line})", extra.span)
    if not costs:
        ctx.error(EqnFormError, "no cost: declare the loss at the output, e.g. "
                  "'cost C = 0.5 * sum((o - y)^2)'", ctx.model_span())
        return None
    decl = costs[0]
    cost = lower(ctx, decl.value, Scope("cost"))
    if cost is None:
        return None
    if cost.shape != ():
        ctx.error(EqnShapeError, f"the cost must be a scalar, got shape {fmt_shape(cost.shape)}; use sum(…)",
                  decl.value.span)
        return None
    if not any(v.kind == "state" for v in free_vars(cost).values()):
        ctx.error(EqnFormError, "the cost reads no state, so it cannot teach the network", decl.value.span)
        return None
    return cost


def check_prediction(ctx: Context) -> Node | None:
    """The `predict` expression (a vector of class scores), if the model has one."""
    predicts = ctx.decls.predicts
    for extra in predicts[1:]:
        ctx.error(EqnFormError, f"a second 'predict' (the first is at line {predicts[0].span.line})", extra.span)
    if not predicts:
        return None
    decl = predicts[0]
    node = lower(ctx, decl.value, Scope("cost"))
    if node is not None and node.ndim != 1:
        ctx.error(EqnShapeError, f"'predict' needs a vector of class scores, got shape {fmt_shape(node.shape)}",
                  decl.value.span)
        return None
    return node


def warn_unpredicted_readout(ctx: Context, cost: Node | None, dynamics: list[Node], prediction: Node | None) -> None:
    """A cost that trains a readout (params the dynamics never read) next to a prediction that
    ignores it: the class would be the argmax of the output state, not of the trained scores."""
    if cost is None or prediction is not None or any(d is None for d in dynamics):
        return
    in_dynamics = {n for d in dynamics for n, v in free_vars(d).items() if v.kind == "param"}
    readout = sorted(n for n, v in free_vars(cost).items() if v.kind == "param" and n not in in_dynamics)
    if readout:
        output = next((n for n, d in ctx.decls.variables.items() if d.kind == "state" and d.output), None)
        ctx.warn(f"the cost trains a readout ({', '.join(readout)}) that no 'predict' uses: the predicted class is "
                 f"the argmax of the output state{f' {output!r}' if output else ''}; add 'predict EXPR' with the "
                 f"readout's class scores", ctx.decls.costs[0].span)


def check_ties_and_pairs(ctx: Context) -> None:
    """Ties name declared params and fit their shapes; a pair joins a weight and its transpose."""
    decls = ctx.decls
    for name, decl in decls.ties.items():
        if name not in decls.variables or decls.variables[name].kind != "param":
            what = a(decls.names[name][0]) if name in decls.names else "undeclared"
            ctx.error(EqnNameError, f"only a declared param can be tied; '{name}' is {what}", decl.name_span)
            continue
        if name not in ctx.params:
            continue
        node = tie(ctx, name)
        if node is not None and node.shape != ctx.params[name].shape:
            ctx.error(EqnShapeError, f"tie of '{name}' has shape {fmt_shape(node.shape)}, but '{name}' is "
                      f"{fmt_shape(ctx.params[name].shape)}", decl.value.span)
            ctx.lowered.ties.pop(name)
            ctx.lowered.progress[("tie", name)] = "failed"  # its uses stay silent
    for p in decls.pairs:
        ok = True
        for name, span in ((p.forward, p.forward_span), (p.backward, p.backward_span)):
            if name not in decls.variables or decls.variables[name].kind != "param":
                ctx.error(EqnNameError, f"a pair joins two params; '{name}' is not a param", span)
                ok = False
        if not ok or p.forward not in ctx.params or p.backward not in ctx.params:
            continue
        ctx.used.update((p.forward, p.backward))
        f, b = ctx.params[p.forward].shape, ctx.params[p.backward].shape
        expected = f[::-1] if len(f) == 2 else f
        if b != expected:
            ctx.error(EqnShapeError, f"pair {p.forward}, {p.backward}: the backward weight must have shape "
                      f"{fmt_shape(expected)} (the forward one is {fmt_shape(f)}), got {fmt_shape(b)}", p.backward_span)


def warn_unused(ctx: Context) -> None:
    for name, (kind, span) in ctx.decls.names.items():
        if name in ctx.used or kind == "state" or (kind == "target" and ctx.decls.costs):
            continue
        ctx.warn(f"{kind} '{name}' is never used", span)


def classify_holomorphy(ctx: Context) -> list[NonHolomorphic]:
    """Every call to a non-holomorphic operation the author wrote (recorded while lowering, so
    that simplification cannot hide one); errors where the model must be holomorphic."""
    result = sorted(ctx.lowered.non_holomorphic.values(), key=lambda n: (n.span.line, n.span.column))
    if ctx.require_holomorphic:
        for n in result:
            ctx.error(EqnHolomorphyError, f"'{n.operation}' is not holomorphic, but the model is declared "
                      "holomorphic (complex β needs complex-differentiable dynamics)", n.span)
    return result

