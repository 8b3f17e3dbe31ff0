"""The checked, derived form of a model: what the emitter and the runtime consume."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..dsl.ast import Span
from ..dsl.errors import EqnError
from ._ir import Node, Shape, reads_elementwise
from ._rules import Rule


# The attributes of the compiled module (`eqn.runtime.EqnModel`) besides its parameters: a param
# may not take one of these names (a test keeps this set equal to the module's).
MODULE_ATTRIBUTES = frozenset({
    '_abc_impl', '_dtype', '_flat_field', '_inputs', '_param_env', '_per_sample', '_roots',
    '_sample_field', '_solve', '_targets', 'coordinate_slopes', 'cost', 'dt', 'energy', 'ep_field',
    'field', 'free', 'free_solver', 'homeostatic_loss', 'init_state', 'jacobian', 'jvp', 'nudged',
    'nudged_solver', 'params', 'phase_field', 'predict', 'prediction', 'program', 'rule', 'solver',
    'step', 'symmetry', 'vector_field', 'vjp', 'with_solver'
})


@dataclass(frozen=True)
class ParamSpec:
    name: str
    shape: Shape
    init: str
    init_args: tuple[float, ...]
    span: Span


@dataclass(frozen=True)
class NonHolomorphic:
    """One use of a non-holomorphic operation, with where it was written."""

    operation: str
    span: Span


@dataclass(frozen=True)
class Coordinate:
    """EP reads a state u through s = φ(u) (`coordinates s = φ(u)`): `value` is φ(u), `slope` φ'(u)."""

    name: str
    value: Node
    slope: Node


@dataclass(frozen=True, eq=False)
class Program:
    """A model after checking and derivation. Plain data: no JAX arrays, no parser objects.

    `field[s]` is the nudged vector field du_s/dt as a function of the states, inputs, targets,
    parameters and `beta` (for the map form it is G_β(u) − u, whose zeros are the map's fixed
    points); `update[s]` is G_β(u) for maps. `dynamics[s]` is the free dynamics as written or, for
    an energy, derived (−∂E/∂u).

    `ep_field[s]` is the field EP differentiates: φ'(u_s)⊙field[s] for a state with declared
    coordinates s = φ(u), field[s] otherwise. It has the same zeros, its β-derivative is −∂C/∂u
    (homeostasis Definition 1), and for reciprocal weights its Jacobian is symmetric where that of
    a map u ← W·φ(u) + b is not.
    """

    name: str
    filename: str
    source: str
    form: str  # "energy", "flow" or "map"
    consts: dict[str, float]
    inputs: dict[str, Shape]
    targets: dict[str, Shape]
    states: dict[str, Shape]
    output: str
    params: dict[str, ParamSpec]
    ties: dict[str, Node]
    pairs: list[tuple[str, str]]
    lets: dict[str, Node]
    energy: Node | None
    cost: Node | None
    dynamics: dict[str, Node]
    field: dict[str, Node]
    update: dict[str, Node] | None
    explicit_beta: bool
    non_holomorphic: list[NonHolomorphic]
    rules: dict[str, Rule]
    warnings: list[EqnError] = field(default_factory=list)
    prediction: Node | None = None  # what the class prediction is the argmax of (default: the output)
    coordinates: dict[str, Coordinate] = field(default_factory=dict)  # by state
    ep_field: dict[str, Node] = field(default_factory=dict)
    nudges: dict[str, Node] = field(default_factory=dict)  # the teaching terms the compiler added (flows, maps)
    # field and ep_field at β = 0 with the teaching term folded away: the free phase computes no cost
    free_field: dict[str, Node] = field(default_factory=dict)
    free_ep_field: dict[str, Node] = field(default_factory=dict)
    # the states in the order a block Gauss–Seidel sweep updates them (no block reads itself)
    sweep_blocks: tuple[tuple[str, ...], ...] = ()

    @property
    def holomorphic(self) -> bool:
        """Whether every operation of the model is complex-differentiable."""
        return not self.non_holomorphic

    def param_count(self) -> int:
        """The number of free parameters (tied ones excluded)."""
        return sum(math.prod(spec.shape) for spec in self.params.values())

    @property
    def diagonal_block(self) -> tuple[str, ...]:
        """The largest sweep block on which the Jacobian of the free field is diagonal: the field of
        each of its states reads no other state of the block, and reads its own state only through
        elementwise operations (a leak −u, φ'(u)⊙…). A linear solve with the Jacobian can then
        eliminate the block exactly, leaving a Schur complement the size of the other states. For a
        layered map u ← G(u) it is every other layer, where the Jacobian is −I."""
        def diagonal(block: tuple[str, ...]) -> bool:
            return all(reads_elementwise(self.free_field[s], s, set(block) - {s}) for s in block)

        blocks = [b for b in self.sweep_blocks if diagonal(b)] if self.free_field else []
        return max(blocks, key=lambda b: sum(math.prod(self.states[s]) for s in b), default=())
