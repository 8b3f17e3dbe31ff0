"""From checked pieces to the `Program`: the field of each form, the nudge from the cost, the
field EP differentiates, the free field without the teaching term, the sweep blocks and the
learning rules, all built once."""

from __future__ import annotations

import os

from . import _algebra as alg
from ._context import Context
from ._derive import BETA, energy_flow, nudge_terms, sweep_blocks, vjp
from ._ir import Node, const, substitute, zeros
from ._program import Coordinate, NonHolomorphic, Program
from ._rules import derive_rules


def coordinate_slope(coordinate: Node, state: str, shape) -> Node:
    """φ'(u) of an elementwise coordinate s = φ(u), derived symbolically."""
    ones = alg.broadcast(const(1.0), shape)
    return vjp(coordinate.args[0], {state}, ones).get(state, zeros(shape))


def derive(ctx: Context, form: str, energy: Node | None, written: dict[str, Node], cost: Node, explicit_beta: bool,
           non_holomorphic: list[NonHolomorphic], coordinates: dict[str, Node], prediction: Node | None) -> Program:
    """The complete `Program` of a model whose checks passed (equations of states: `written`)."""
    states = ctx.states
    update = None
    nudges: dict[str, Node] = {}
    slopes = {s: coordinate_slope(node, s, states[s]) for s, node in coordinates.items()}
    at_rest = {"beta": zeros(())}
    if form == "energy":
        total = energy if explicit_beta else alg.add(energy, alg.mul(BETA, cost))
        dynamics = energy_flow(substitute(energy, at_rest) if explicit_beta else energy, states)
        field = energy_flow(total, states)
    else:
        nudges = {} if explicit_beta else nudge_terms(cost, states, coordinates, slopes)
        nudged = {s: alg.add(written[s], nudges[s]) if s in nudges else written[s] for s in states}
        dynamics = {s: substitute(written[s], at_rest) for s in states}
        if form == "flow":
            field = nudged
        else:
            update = nudged
            field = {s: alg.sub(nudged[s], ctx.leaves[s]) for s in states}
    ep_field = {s: alg.mul(slopes[s], f) if s in slopes else f for s, f in field.items()}
    free_params = {p: spec.shape for p, spec in ctx.params.items() if p not in ctx.decls.ties}
    coordinate_names = {s: node.attr("name") for s, node in coordinates.items()}
    rules = derive_rules(form, free_params, substitute(energy, at_rest) if energy is not None else None,
                         written if form != "energy" else {}, states, cost, dynamics, coordinate_names)
    decls = ctx.decls
    return Program(
        name=decls.model.name if decls.model else _stem(ctx.module.filename), filename=ctx.module.filename,
        source=ctx.module.source, form=form, consts=dict(ctx.consts), inputs=dict(ctx.inputs),
        targets=dict(ctx.targets), states=dict(states), output=ctx.output,
        params={p: s for p, s in ctx.params.items() if p not in decls.ties},
        ties={p: ctx.lowered.ties[p] for p in decls.ties if p in ctx.lowered.ties},
        pairs=[(p.forward, p.backward) for p in decls.pairs], lets=dict(ctx.lowered.lets), energy=energy,
        cost=cost, dynamics=dynamics, field=field, update=update, explicit_beta=explicit_beta,
        non_holomorphic=non_holomorphic, rules=rules, warnings=list(ctx.warnings), prediction=prediction,
        coordinates={s: Coordinate(coordinate_names[s], coordinates[s], slopes[s]) for s in coordinates},
        ep_field=ep_field, nudges=nudges,
        free_field={s: substitute(f, at_rest) for s, f in field.items()},
        free_ep_field={s: substitute(f, at_rest) for s, f in ep_field.items()},
        sweep_blocks=sweep_blocks(field),
    )


def _stem(filename: str) -> str:
    return os.path.splitext(os.path.basename(filename))[0] or "model"
