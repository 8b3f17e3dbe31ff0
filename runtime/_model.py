"""The compiled model: an Equinox module whose fields are a program's parameters, with the
fixed-point solvers of its phases, the vector field, fixed points, Jacobians, symmetry
diagnostics and the learning rules evaluated. Every method takes batched arrays (leading axis =
batch) and vmaps the compiler's per-sample functions over them.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..compiler import Node, Program, Rule, evaluate_many, load, state_independent
from ..compiler import rules as program_rules
from ._solver import BlockField, FixedPointSolver, Solution
from ._solvers import default_solvers

State = dict[str, Array]


def _complex_if(dtype, beta):
    """The state dtype, made complex (at the same precision) when β is complex."""
    return jnp.result_type(dtype, jnp.complex64) if jnp.iscomplexobj(beta) else dtype


def _batch_size(tree) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


class EqnModel(eqx.Module):
    """A compiled `.eqn` model. Its fields are the model's parameters; `program` (static) holds
    the checked, derived equations; `free_solver` and `nudged_solver` find the phases' fixed
    points; `dt` is the Euler step (1 for maps).

    The methods share their arguments:
        state: a dict state name → array [batch, *shape].
        x: the inputs, an array [batch, *shape] (a dict by name for a model with several).
        y: the targets, likewise (None: zeros, for the free phase).
        beta: the nudge β, a real or complex scalar.

    It is an ordinary pytree: use `equinox.filter_jit` (not `jax.jit`: the program and solvers
    are static fields) and `equinox.filter_grad`.
    """

    program: Program = eqx.field(static=True)
    free_solver: FixedPointSolver = eqx.field(static=True)
    nudged_solver: FixedPointSolver = eqx.field(static=True)
    dt: float = eqx.field(static=True)

    @property
    def solver(self) -> FixedPointSolver:
        """The free phase's solver (see `with_solver`)."""
        return self.free_solver

    def with_solver(self, solver: FixedPointSolver | None = None, *, free: FixedPointSolver | None = None,
                    nudged: FixedPointSolver | None = None) -> "EqnModel":
        """The same model whose phases use other solvers by default.

        Args:
            solver: the solver of every phase.
            free: the free phase's solver (instead of `solver`).
            nudged: the nudged phases' solver (instead of `solver`).
        """
        return dataclasses.replace(self, free_solver=free or solver or self.free_solver,
                                   nudged_solver=nudged or solver or self.nudged_solver)

    # -- parameters and inputs -------------------------------------------------------------
    @property
    def params(self) -> dict[str, Array]:
        return {name: getattr(self, name) for name in self.program.params}

    @property
    def _dtype(self):
        """The parameters' precision: placeholders for absent inputs and targets take it."""
        return jnp.result_type(*jax.tree_util.tree_leaves(self.params))

    def _param_env(self) -> dict[str, Array]:
        env = dict(self.params)
        if self.program.ties:
            env.update(evaluate_many(self.program.ties, env))
        return env

    def _inputs(self, x) -> dict[str, Array]:
        names = list(self.program.inputs)
        if isinstance(x, dict):
            return x
        if len(names) != 1:
            raise ValueError(f"model '{self.program.name}' has inputs {names}; pass a dict")
        return {names[0]: x}

    def _targets(self, y, batch: int) -> dict[str, Array]:
        names = list(self.program.targets)
        if y is None:
            return {n: jnp.zeros((batch,) + s, self._dtype) for n, s in self.program.targets.items()}
        if isinstance(y, dict):
            return y
        if len(names) != 1:
            raise ValueError(f"model '{self.program.name}' has targets {names}; pass a dict")
        return {names[0]: y}

    def init_state(self, x, dtype=None) -> State:
        """The zero state for a batch of inputs (the papers start every free phase from 0)."""
        inputs = self._inputs(x)
        batch = _batch_size(inputs)
        dtype = dtype or self._dtype
        return {s: jnp.zeros((batch,) + shape, dtype) for s, shape in self.program.states.items()}

    # -- the vector field ------------------------------------------------------------------
    def _per_sample(self, roots: dict[str, Node]):
        params = self._param_env()

        def run(state, inputs, targets, beta, extra):
            env = {**params, **state, **inputs, **targets, "beta": beta, **extra}
            values = evaluate_many(roots, env)
            out = {}
            for name, value in values.items():
                shape = roots[name].shape
                out[name] = jnp.broadcast_to(value, shape)
            return out

        return run

    def phase_field(self, x, y=None, beta=0.0, *, ep: bool = False):
        """u ↦ F(u; β) for one phase (fixed input, target and β); with `ep`, the field EP
        differentiates (`ep_field`). The parts of the field that do not read the state, such as
        the input drive W·x, are computed here once, not at every step of the dynamics. The result
        is a `BlockField`: it also evaluates a block of states alone, for sweeping solvers."""
        inputs = self._inputs(x)
        targets = self._targets(y, _batch_size(inputs))
        roots = self._roots(ep, at_rest=isinstance(beta, (int, float)) and beta == 0)
        beta = jnp.asarray(beta)
        params = self._param_env()
        hoisted = state_independent(roots)

        def constants(inputs_i, targets_i):
            return evaluate_many(hoisted, {**params, **inputs_i, **targets_i, "beta": beta})

        known = jax.vmap(constants)(inputs, targets) if hoisted else {}

        def per_sample(state_i, inputs_i, targets_i, known_i, names):
            env = {**params, **state_i, **inputs_i, **targets_i, "beta": beta}
            wanted = {name: roots[name] for name in names}
            values = evaluate_many(wanted, env, {int(uid): v for uid, v in known_i.items()})
            return {name: jnp.broadcast_to(values[name], roots[name].shape) for name in names}

        def part(names: tuple[str, ...]):
            def components(state: State) -> State:
                out = jax.vmap(lambda *args: per_sample(*args, names))(state, inputs, targets, known)
                dtype = _complex_if(jnp.result_type(*jax.tree_util.tree_leaves(state)), beta)
                return {s: out[s].astype(dtype) for s in names}
            return components

        return BlockField(part, tuple(self.program.states), self.program.sweep_blocks)

    def _roots(self, ep: bool, at_rest: bool) -> dict:
        """The field's expressions; `at_rest` (β is a literal 0): those without the teaching
        term, so that a free phase does not evaluate the cost at every step only to multiply it by 0."""
        program = self.program
        if at_rest and program.free_field:
            return program.free_ep_field if ep else program.free_field
        return program.ep_field if ep else program.field

    def vector_field(self, state: State, x, y=None, beta=0.0) -> State:
        """F(u; β): the nudged field du/dt at a batch of states; β real or complex (a scalar).

        For the map form this is G_β(u) − u, whose zeros are the map's fixed points.
        """
        return self.phase_field(x, y, beta)(state)

    field = vector_field

    def ep_field(self, state: State, x, y=None, beta=0.0) -> State:
        """The field EP differentiates: φ'(u)⊙F(u; β) for states with declared coordinates
        s = φ(u), F itself otherwise. Its zeros are F's; its Jacobian is what `jacobian`,
        `symmetry` and `homeostatic_loss` measure, and (∂/∂θ)ᵀ of it gives the learning rules."""
        return self.phase_field(x, y, beta, ep=True)(state)

    def step(self, state: State, x, y=None, beta=0.0) -> State:
        """One step of the dynamics: u + dt·F(u) (flows, energies) or G(u) (maps)."""
        field = self.vector_field(state, x, y, beta)
        return {s: state[s] + self.dt * field[s] for s in state}

    def energy(self, state: State, x, y=None, beta=0.0) -> Float[Array, " batch"]:
        """E(u) + β·C(u) per sample (energy models only)."""
        if self.program.energy is None:
            raise TypeError(f"model '{self.program.name}' is a {self.program.form}; it has no energy")
        inputs = self._inputs(x)
        targets = self._targets(y, _batch_size(inputs))
        roots = {"E": self.program.energy, "C": self.program.cost}
        run = self._per_sample(roots)
        values = jax.vmap(run, in_axes=(0, 0, 0, None, None))(state, inputs, targets, jnp.asarray(beta), {})
        return values["E"] if self.program.explicit_beta else values["E"] + beta * values["C"]

    def cost(self, state: State, y, x=None) -> Float[Array, " batch"]:
        """The cost C per sample (the loss at the output)."""
        targets = self._targets(y, _batch_size(state))
        batch = _batch_size(state)
        inputs = self._inputs(x) if x is not None else {
            n: jnp.zeros((batch,) + s, self._dtype) for n, s in self.program.inputs.items()}
        run = self._per_sample({"C": self.program.cost})
        return jax.vmap(run, in_axes=(0, 0, 0, None, None))(state, inputs, targets, jnp.asarray(0.0), {})["C"]

    # -- fixed points ----------------------------------------------------------------------
    def _solve(self, x, y, beta, init, solver: FixedPointSolver, with_stats: bool, key):
        start = self.init_state(x) if init is None else init
        if jnp.iscomplexobj(beta_array := jnp.asarray(beta)):
            start = {s: v.astype(_complex_if(v.dtype, beta_array)) for s, v in start.items()}
        state, solution = solver.solve(self.phase_field(x, y, beta), start, self.dt, key)
        return (state, solution) if with_stats else state

    def free(self, x, *, init: State | None = None, solver: FixedPointSolver | None = None,
             with_stats: bool = False, key: PRNGKeyArray | None = None) -> State | tuple[State, Solution]:
        """The free fixed point u*₀ (β = 0).

        Args:
            x: a batch of inputs (a dict by name for several inputs).
            init: the start (default: the zero state, as in the papers).
            solver: the solver (default: the model's free solver).
            with_stats: also return the phase's `Solution` (per-sample status, residual, steps).
            key: a PRNG key, for solvers with neuron noise.
        """
        return self._solve(x, None, 0.0, init, solver or self.free_solver, with_stats, key)

    def nudged(self, x, y, beta, *, init: State | None = None, solver: FixedPointSolver | None = None,
               with_stats: bool = False, key: PRNGKeyArray | None = None) -> State | tuple[State, Solution]:
        """The nudged fixed point u*_β.

        Args:
            x, y: a batch of inputs and targets.
            beta: the nudge, real or complex (a scalar).
            init: the start; pass the free fixed point.
            solver: the solver (default: the model's nudged solver).
            with_stats: also return the phase's `Solution`.
            key: a PRNG key, for solvers with neuron noise.
        """
        return self._solve(x, y, beta, init, solver or self.nudged_solver, with_stats, key)

    def prediction(self, state: State, x) -> Float[Array, "batch classes"]:
        """The scores whose argmax is the predicted class: the model's `predict` expression, or
        the output state."""
        if self.program.prediction is None:
            return state[self.program.output]
        inputs = self._inputs(x)
        targets = self._targets(None, _batch_size(inputs))
        run = self._per_sample({"p": self.program.prediction})
        return jax.vmap(run, in_axes=(0, 0, 0, None, None))(state, inputs, targets, jnp.asarray(0.0), {})["p"]

    def predict(self, x, **kwargs) -> Float[Array, "batch classes"]:
        """Class scores at the free fixed point."""
        return self.prediction(self.free(x, **kwargs), x)

    # -- Jacobians and symmetry ------------------------------------------------------------
    def _sample_field(self, x, ep: bool = True):
        """Per-sample field on a dict of states (β = 0), with the batch's inputs: the field EP
        differentiates, or with `ep=False` the dynamics' own field. For Jacobians taken a sample at
        a time, under `jax.vmap`."""
        inputs = self._inputs(x)
        run = self._per_sample(self._roots(ep, at_rest=True))
        targets = {n: jnp.zeros(s, self._dtype) for n, s in self.program.targets.items()}

        def field(state, sample_inputs):
            return run(state, sample_inputs, targets, jnp.asarray(0.0), {})

        return field, inputs

    def _flat_field(self, x, ep: bool = True):
        """`_sample_field` on a flat state vector, with the ravel and unravel functions."""
        field, inputs = self._sample_field(x, ep)
        shapes = self.program.states
        sizes = [math.prod(s) for s in shapes.values()]

        def unravel(flat):
            out, offset = {}, 0
            for (name, shape), size in zip(shapes.items(), sizes):
                out[name] = flat[offset:offset + size].reshape(shape)
                offset += size
            return out

        def ravel(tree):
            return jnp.concatenate([tree[name].reshape(-1) for name in shapes])

        def flat_field(flat, sample_inputs):
            return ravel(field(unravel(flat), sample_inputs))

        return flat_field, ravel, unravel, inputs

    def jacobian(self, state: State, x) -> Float[Array, "batch n n"]:
        """Dense Jacobian of the free `ep_field` per sample (∂F/∂u when the model declares no
        coordinates): [batch, n, n], states flattened in declaration order."""
        flat_field, ravel, _, inputs = self._flat_field(x)
        flat = jax.vmap(ravel)(state)
        return jax.vmap(jax.jacfwd(flat_field))(flat, inputs)

    def jvp(self, state: State, x, tangent: State) -> State:
        """J·v, matrix-free (forward mode)."""
        flat_field, ravel, unravel, inputs = self._flat_field(x)

        def one(u, v, inp):
            return jax.jvp(lambda w: flat_field(w, inp), (u,), (v,))[1]

        out = jax.vmap(one)(jax.vmap(ravel)(state), jax.vmap(ravel)(tangent), inputs)
        return jax.vmap(unravel)(out)

    def vjp(self, state: State, x, cotangent: State) -> State:
        """Jᵀ·v, matrix-free (reverse mode)."""
        flat_field, ravel, unravel, inputs = self._flat_field(x)

        def one(u, v, inp):
            return jax.vjp(lambda w: flat_field(w, inp), u)[1](v)[0]

        out = jax.vmap(one)(jax.vmap(ravel)(state), jax.vmap(ravel)(cotangent), inputs)
        return jax.vmap(unravel)(out)

    def symmetry(self, state: State, x) -> Float[Array, " batch"]:
        """‖S‖/(‖S‖ + ‖A‖) of the Jacobian per sample (Frobenius norms; S, A its symmetric and
        skew parts). 1 for energy models; homeostasis §3."""
        jac = self.jacobian(state, x)
        sym = 0.5 * (jac + jnp.swapaxes(jac, -1, -2))
        skew = 0.5 * (jac - jnp.swapaxes(jac, -1, -2))
        s = jnp.sqrt(jnp.sum(jnp.abs(sym) ** 2, axis=(-1, -2)))
        a = jnp.sqrt(jnp.sum(jnp.abs(skew) ** 2, axis=(-1, -2)))
        return s / (s + a)

    def homeostatic_loss(self, state: State, x, key: PRNGKeyArray, samples: int = 1) -> Float[Array, " batch"]:
        """Hutchinson estimate of E_ε[‖Jε‖² − εᵀJ²ε] = Tr(JᵀJ) − Tr(J²) = 2‖A‖²_F per sample
        (homeostasis Eq. 12 and App. A.2), with `samples` Gaussian probes."""
        flat_field, ravel, _, inputs = self._flat_field(x)
        flat = jax.vmap(ravel)(state)
        batch, n = flat.shape
        noise = jax.random.normal(key, (samples, batch, n), flat.dtype)

        def one(u, eps, inp):
            f = lambda w: flat_field(w, inp)  # noqa: E731
            j_eps = jax.jvp(f, (u,), (eps,))[1]
            jj_eps = jax.jvp(f, (u,), (j_eps,))[1]
            return jnp.sum(j_eps * j_eps) - jnp.sum(eps * jj_eps)

        values = jax.vmap(lambda eps: jax.vmap(one)(flat, eps, inputs))(noise)
        return jnp.mean(values, axis=0)

    def coordinate_slopes(self, state: State) -> State:
        """φ'(u) of every state's coordinate s = φ(u) (1 where none is declared): it carries a
        response dβu, or an adjoint of `ep_field`, into the coordinates EP reads, dβs = φ'(u)·dβu."""
        coordinates = self.program.coordinates
        run = self._per_sample({s: c.slope for s, c in coordinates.items()})
        batch = _batch_size(state)
        inputs = {n: jnp.zeros((batch,) + s, self._dtype) for n, s in self.program.inputs.items()}
        targets = {n: jnp.zeros((batch,) + s, self._dtype) for n, s in self.program.targets.items()}
        values = jax.vmap(run, in_axes=(0, 0, 0, None, None))(state, inputs, targets, jnp.asarray(0.0), {})
        return {s: values[s] if s in coordinates else jnp.ones_like(v) for s, v in state.items()}

    # -- learning rules --------------------------------------------------------------------
    def rule(self, param: str, state: State, x, y=None, response: State | None = None,
             part: str = "dynamics") -> Array:
        """The derived learning rule of `param` evaluated per sample: −∂E/∂θ at `state` (energy
        form) or (∂F/∂θ)ᵀ·dβu with dβu = `response` (flow and map forms; a state with coordinates
        s = φ(u) enters as dβs = φ'(u)·dβu); with part="cost", the term −∂C/∂θ of a parameter the
        cost reads."""
        rule = self.program.rules[param]
        expression = rule.expression if part == "dynamics" else rule.cost_expression
        if expression is None:
            raise ValueError(f"the cost does not read '{param}'")
        inputs = self._inputs(x)
        targets = self._targets(y, _batch_size(inputs))
        extra = {"d:" + s: v for s, v in (response or {}).items()}
        if response is not None and self.program.coordinates:
            slopes = self.coordinate_slopes(state)
            for s, c in self.program.coordinates.items():
                extra["d:" + c.name] = slopes[s] * response[s]
        run = self._per_sample({param: expression})
        return jax.vmap(run, in_axes=(0, 0, 0, None, 0))(state, inputs, targets, jnp.asarray(0.0), extra)[param]


def _initialise(spec, key, dtype) -> Array:
    init = jax.nn.initializers
    shape = spec.shape
    args = spec.init_args
    fans = dict(in_axis=1, out_axis=0) if len(shape) >= 2 else {}
    table = {
        "glorot": lambda: init.glorot_uniform(**fans),
        "glorot_normal": lambda: init.glorot_normal(**fans),
        "he": lambda: init.he_uniform(**fans),
        "lecun": lambda: init.lecun_normal(**fans),
        "orthogonal": lambda: init.orthogonal(column_axis=0),
        "zeros": lambda: init.zeros,
        "ones": lambda: init.ones,
        "normal": lambda: init.normal(stddev=args[0]),
        "constant": lambda: init.constant(args[0]),
    }
    if spec.init in ("glorot", "glorot_normal", "he", "lecun", "orthogonal") and args:
        return args[0] * table[spec.init]()(key, shape, dtype)  # an optional gain
    if spec.init == "uniform":
        low, high = (-args[0], args[0]) if len(args) == 1 else args
        return jax.random.uniform(key, shape, dtype, low, high)
    return table[spec.init]()(key, shape, dtype)


def emit(program: Program, key: PRNGKeyArray, dtype=None, solver: FixedPointSolver | None = None,
         dt: float | None = None) -> EqnModel:
    """Build the Equinox module of a program.

    Args:
        program: a checked program (`eqn.load`).
        key: draws the parameters from their initialisers.
        dtype: the parameters' precision (float32 by default; float64 needs 64-bit JAX).
        solver: the solver of every phase (default: the registry's default budgets).
        dt: the Euler step of flows and energies (default 0.2; maps use 1).
    """
    dtype = jnp.dtype(dtype or jnp.float32)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs 64-bit JAX: call jax.config.update('jax_enable_x64', True) first")
    fields = {name: Array for name in program.params}
    cls = type(_class_name(program.name), (EqnModel,), {"__annotations__": fields, "__module__": __name__,
                                                       "__doc__": f"Compiled from {program.filename}."})
    keys = jax.random.split(key, max(1, len(program.params)))
    params = {name: _initialise(spec, k, dtype) for (name, spec), k in zip(program.params.items(), keys)}
    if dt is None:
        dt = 1.0 if program.form == "map" else 0.2
    free, nudged = (solver, solver) if solver is not None else default_solvers()
    return cls(program=program, free_solver=free, nudged_solver=nudged, dt=float(dt), **params)


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) or "Model"


def compile(path_or_source: str | Path | Program, *, key: PRNGKeyArray | None = None, consts: dict | None = None,
            dtype=None, holomorphic: bool = False, solver: FixedPointSolver | None = None,
            dt: float | None = None) -> EqnModel:
    """Compile a `.eqn` model into an Equinox module.

    Args:
        path_or_source: a path, a zoo name such as "hopfield_mlp", source text, or a `Program`.
        key: draws the parameters (default PRNGKey(0)).
        consts: values that override the file's constants.
        dtype: the parameters' precision.
        holomorphic: refuse non-holomorphic operations.
        solver: the solver of every phase (default: `default_solvers()`, Anderson on sweeps
            with the budgets of `PHASE_DEFAULTS`, as the `eqn` command runs).
        dt: the Euler step of flows and energies.

    Raises:
        ErrorList: every error of the file, located.
    """
    program = path_or_source if isinstance(path_or_source, Program) else load(
        path_or_source, consts=consts, holomorphic=holomorphic)
    return emit(program, jax.random.PRNGKey(0) if key is None else key, dtype=dtype, solver=solver, dt=dt)


def rules(model_or_path: EqnModel | Program | str | Path, **kwargs) -> dict[str, Rule]:
    """The derived learning rule of every parameter, by name, of a compiled model or of what
    `eqn.load` takes (with its keyword arguments)."""
    return dict(model_or_path.program.rules) if isinstance(model_or_path, EqnModel) else program_rules(
        model_or_path, **kwargs)
