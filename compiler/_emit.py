"""Program → Equinox module: the IR evaluated with `jax.numpy`, and the compiled model class.

Evaluation walks the IR while JAX traces, so under `jax.jit` the interpretation costs nothing at
run time: XLA sees only the array operations. Every function here works on one sample; the
module's methods `vmap` them over the leading batch axis.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..runtime._solvers import BlockField, FixedPointSolver, FixedStep, SolveStats
from . import _functions
from ._ir import Const, Node, Op, Var, Zero, children, walk
from ._program import Program

# ----------------------------------------------------------------------------- evaluation


def _is_complex(x) -> bool:
    return jnp.iscomplexobj(x)


def _sigmoid(x):
    return 1.0 / (1.0 + jnp.exp(-x)) if _is_complex(x) else jax.nn.sigmoid(x)


def _dsilu(x):
    """dSiLU of holomorphic-ep App. B.2: (z/2)σ(z) + (1 − z/2)σ(z − 2)."""
    return 0.5 * x * _sigmoid(x) + (1.0 - 0.5 * x) * _sigmoid(x - 2.0)


def _real_part(x):
    return jnp.real(x) if _is_complex(x) else x


def _shift(x):
    """A constant that keeps exp() finite; softmax-like operations are invariant to it."""
    return jax.lax.stop_gradient(jnp.max(_real_part(x)))


def _softmax(x):
    e = jnp.exp(x - jax.lax.stop_gradient(jnp.max(_real_part(x), axis=-1, keepdims=True)))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def _logsumexp(x):
    c = _shift(x)
    return c + jnp.log(jnp.sum(jnp.exp(x - c)))


def _conv(x, kernel, stride, padding):
    """conv of a [C, H, W] image with an [O, C, kh, kw] kernel, run channels-last: XLA:CPU runs an
    NCHW convolution inside a loop body about 10× slower than the same one outside it
    (jax-ml/jax#12868), and the dynamics are loops."""
    dtype = jnp.result_type(x, kernel)
    out = jax.lax.conv_general_dilated(
        jnp.transpose(x, (1, 2, 0))[None].astype(dtype), jnp.transpose(kernel, (2, 3, 1, 0)).astype(dtype),
        (stride, stride), [(padding, padding), (padding, padding)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.transpose(out[0], (2, 0, 1))


def _conv_transpose(h, kernel, stride, padding, shape):
    """The exact adjoint of `conv` with respect to its input (transposed convolution) for an input
    of `shape` [C, H, W]: the kernel flipped with its channels swapped, run over the input dilated
    by the stride, channels-last like `conv` (JAX's own transpose rule picks a layout that is
    again slow inside loops)."""
    dtype = jnp.result_type(h, kernel)
    size = kernel.shape[2:]
    pads = []
    for axis in (0, 1):
        n, m, k = shape[1 + axis], h.shape[1 + axis], size[axis]
        extra = n - ((m - 1) * stride + k - 2 * padding)  # rows the forward conv's stride skipped
        pads.append((k - 1 - padding, k - 1 - padding + extra))
    flipped = jnp.transpose(kernel[:, :, ::-1, ::-1], (2, 3, 0, 1)).astype(dtype)  # [kh, kw, O, C]
    out = jax.lax.conv_general_dilated(
        jnp.transpose(h, (1, 2, 0))[None].astype(dtype), flipped, (1, 1), pads, lhs_dilation=(stride, stride),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.transpose(out[0], (2, 0, 1))


def _softpool(x, size, stride, tau):
    """Softmax pooling (holomorphic-ep App. B.2): y = Σ_R softmax(x/τ)_i x_i over each window R."""
    weights = jnp.exp((x - _shift(x)) / tau)
    zero = np.zeros((), weights.dtype)  # concrete, so JAX picks the differentiable window-sum

    def window_sum(v):
        return jax.lax.reduce_window(v, zero, jax.lax.add, (1, size, size), (1, stride, stride), "VALID")

    return window_sum(weights * x) / window_sum(weights)


def _sum_to(x, shape):
    lead = x.ndim - len(shape)
    x = jnp.sum(x, axis=tuple(range(lead))) if lead else x
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and x.shape[i] != 1)
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def _where_real(condition, x):
    return condition(_real_part(x)).astype(x.dtype)


def _power(a, b, node):
    exponent = node.args[1]
    if isinstance(exponent, Const) and float(exponent.value).is_integer():
        return a ** int(exponent.value)
    return a ** b


_EVAL = {
    "add": lambda v, n: v[0] + v[1],
    "sub": lambda v, n: v[0] - v[1],
    "mul": lambda v, n: v[0] * v[1],
    "div": lambda v, n: v[0] / v[1],
    "pow": lambda v, n: _power(v[0], v[1], n),
    "neg": lambda v, n: -v[0],
    "matmul": lambda v, n: jnp.matmul(v[0], v[1]),
    "dot": lambda v, n: jnp.sum(v[0] * v[1]),
    "outer": lambda v, n: jnp.outer(v[0], v[1]),
    "transpose": lambda v, n: jnp.transpose(v[0]),
    "sum": lambda v, n: jnp.sum(v[0]),
    "mean": lambda v, n: jnp.mean(v[0]),
    "sum_to": lambda v, n: _sum_to(v[0], n.attr("shape")),
    "broadcast": lambda v, n: jnp.broadcast_to(v[0], n.attr("shape")),
    "reshape": lambda v, n: jnp.reshape(v[0], n.attr("shape")),
    "named": lambda v, n: v[0],
    "exp": lambda v, n: jnp.exp(v[0]),
    "log": lambda v, n: jnp.log(v[0]),
    "tanh": lambda v, n: jnp.tanh(v[0]),
    "sigmoid": lambda v, n: _sigmoid(v[0]),
    "sin": lambda v, n: jnp.sin(v[0]),
    "cos": lambda v, n: jnp.cos(v[0]),
    "sinh": lambda v, n: jnp.sinh(v[0]),
    "cosh": lambda v, n: jnp.cosh(v[0]),
    "sqrt": lambda v, n: jnp.sqrt(v[0]),
    "softplus": lambda v, n: jnp.log1p(jnp.exp(v[0])) if _is_complex(v[0]) else jax.nn.softplus(v[0]),
    "silu": lambda v, n: v[0] * _sigmoid(v[0]),
    "dsilu": lambda v, n: _dsilu(v[0]),
    "relu": lambda v, n: v[0] * _where_real(lambda r: r > 0, v[0]),
    "abs": lambda v, n: jnp.abs(v[0]),
    "hardsigmoid": lambda v, n: jnp.clip(v[0], 0.0, 1.0),
    "heaviside": lambda v, n: _where_real(lambda r: r > 0, v[0]),
    "sign": lambda v, n: jnp.sign(v[0]),
    "box": lambda v, n: _where_real(lambda r: (r > 0) & (r < 1), v[0]),
    "softmax": lambda v, n: _softmax(v[0]),
    "logsumexp": lambda v, n: _logsumexp(v[0]),
    "conv": lambda v, n: _conv(v[0], v[1], n.attr("stride"), n.attr("padding")),
    "conv_transpose": lambda v, n: _conv_transpose(v[0], v[1], n.attr("stride"), n.attr("padding"), n.shape),
    "softpool": lambda v, n: _softpool(v[0], n.attr("size"), n.attr("stride"), n.attr("tau")),
}


def _apply(node: Op, values: list) -> Any:
    if node.op in _EVAL:
        return _EVAL[node.op](values, node)
    if node.op == "call":
        (value,) = values
        result = evaluate(node.attr("body"), {node.attr("param"): value})
        return jnp.broadcast_to(result, jnp.shape(value))
    if node.op == "vjp":
        return _pullback(node, values)
    if node.op.startswith("py:"):
        function, order = _functions.split_op_name(node.op)
        return function.derivative(order)(*values) if order else function.fn(*values)
    raise NotImplementedError(f"no evaluation rule for operation '{node.op}'")


def _pullback(node: Op, values: list):
    *primals, cotangent = values
    primal = Op(node.attr("primal_shape"), None, op=node.attr("of"), args=(), attrs=node.attr("inner"))
    dtype = jnp.result_type(*primals, cotangent)
    primals = [jnp.asarray(p).astype(dtype) if jnp.issubdtype(dtype, jnp.complexfloating) else p for p in primals]
    out, pull = jax.vjp(lambda *args: _apply(primal, list(args)), *primals)
    return pull(jnp.asarray(cotangent).astype(out.dtype))[node.attr("index")]


def evaluate_many(roots: dict[str, Node], env: dict[str, Any], known: dict[int, Any] | None = None) -> dict[str, Any]:
    """Values of several IR roots that share sub-expressions, on one sample. `known` holds values
    already computed, by node uid."""
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
                key = "d:" + node.name if node.kind == "cotangent" else node.name
                memo[node.uid] = env[key]
            else:
                memo[node.uid] = _apply(node, [memo[a.uid] for a in node.args])
    return {name: memo[root.uid] for name, root in roots.items()}


def evaluate(root: Node, env: dict[str, Any]) -> Any:
    return evaluate_many({"_": root}, env)["_"]


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


# ----------------------------------------------------------------------------- the module

State = dict[str, Array]

_RESERVED = None  # filled below, once EqnModel exists


def _complex_if(dtype, beta):
    """The state dtype, made complex (at the same precision) when β is complex."""
    return jnp.result_type(dtype, jnp.complex64) if jnp.iscomplexobj(beta) else dtype


def _batch_size(tree) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


class EqnModel(eqx.Module):
    """A compiled `.eqn` model. Its fields are the model's parameters; `program` (static) holds
    the checked, derived equations. Methods take batched arrays (leading axis = batch) and
    states as dicts name → array."""

    program: Program = eqx.field(static=True)
    solver: FixedPointSolver = eqx.field(static=True)
    dt: float = eqx.field(static=True)

    def with_solver(self, solver: FixedPointSolver) -> "EqnModel":
        """The same model whose phases use `solver` by default."""
        return dataclasses.replace(self, solver=solver)

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

    def energy(self, state: State, x, y=None, beta=0.0) -> Array:
        """E(u) + β·C(u) per sample (energy models only)."""
        if self.program.energy is None:
            raise TypeError(f"model '{self.program.name}' is a {self.program.form}; it has no energy")
        inputs = self._inputs(x)
        targets = self._targets(y, _batch_size(inputs))
        roots = {"E": self.program.energy, "C": self.program.cost}
        run = self._per_sample(roots)
        values = jax.vmap(run, in_axes=(0, 0, 0, None, None))(state, inputs, targets, jnp.asarray(beta), {})
        return values["E"] if self.program.explicit_beta else values["E"] + beta * values["C"]

    def cost(self, state: State, y, x=None) -> Array:
        """The cost C per sample (the loss at the output)."""
        targets = self._targets(y, _batch_size(state))
        batch = _batch_size(state)
        inputs = self._inputs(x) if x is not None else {n: jnp.zeros((batch,) + s, self._dtype) for n, s in self.program.inputs.items()}
        run = self._per_sample({"C": self.program.cost})
        return jax.vmap(run, in_axes=(0, 0, 0, None, None))(state, inputs, targets, jnp.asarray(0.0), {})["C"]

    # -- fixed points ----------------------------------------------------------------------
    def _solve(self, x, y, beta, init, solver, return_info, key):
        solver = solver or self.solver
        start = self.init_state(x) if init is None else init
        if jnp.iscomplexobj(beta_array := jnp.asarray(beta)):
            start = {s: v.astype(_complex_if(v.dtype, beta_array)) for s, v in start.items()}
        state, stats = solver.solve(self.phase_field(x, y, beta), start, self.dt, key)
        return (state, stats) if return_info else state

    def free(self, x, *, init: State | None = None, solver: FixedPointSolver | None = None,
             return_info: bool = False, key=None):
        """The free fixed point u*₀ (β = 0), from `init` or the zero state."""
        return self._solve(x, None, 0.0, init, solver, return_info, key)

    def nudged(self, x, y, beta, *, init: State | None = None, solver: FixedPointSolver | None = None,
               return_info: bool = False, key=None):
        """The nudged fixed point u*_β; β may be complex. Start from the free fixed point (`init`)."""
        return self._solve(x, y, beta, init, solver, return_info, key)

    def prediction(self, state: State, x) -> Array:
        """The scores whose argmax is the predicted class: the model's `predict` expression, or
        the output state."""
        if self.program.prediction is None:
            return state[self.program.output]
        inputs = self._inputs(x)
        targets = self._targets(None, _batch_size(inputs))
        run = self._per_sample({"p": self.program.prediction})
        return jax.vmap(run, in_axes=(0, 0, 0, None, None))(state, inputs, targets, jnp.asarray(0.0), {})["p"]

    def predict(self, x, **kwargs) -> Array:
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

    def jacobian(self, state: State, x) -> Array:
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

    def symmetry(self, state: State, x) -> Array:
        """‖S‖/(‖S‖ + ‖A‖) of the Jacobian per sample (Frobenius norms; S, A its symmetric and
        skew parts). 1 for energy models; homeostasis §3."""
        jac = self.jacobian(state, x)
        sym = 0.5 * (jac + jnp.swapaxes(jac, -1, -2))
        skew = 0.5 * (jac - jnp.swapaxes(jac, -1, -2))
        s = jnp.sqrt(jnp.sum(jnp.abs(sym) ** 2, axis=(-1, -2)))
        a = jnp.sqrt(jnp.sum(jnp.abs(skew) ** 2, axis=(-1, -2)))
        return s / (s + a)

    def homeostatic_loss(self, state: State, x, key: PRNGKeyArray, samples: int = 1) -> Array:
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
    """Build the Equinox module of a program, its parameters drawn from `key`."""
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
    return cls(program=program, solver=solver or FixedStep(), dt=float(dt), **params)


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) or "Model"


RESERVED_NAMES = frozenset(name for name in dir(EqnModel) if not name.startswith("__")) | {"program", "solver", "dt"}
