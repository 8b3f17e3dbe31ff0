"""The reference training step (reciprocal MLP 784-256-256-10, batch 50, random inputs, hEP with
N points, 150 + 20 fixed steps at tol 0, or Anderson on sweeps) timed with the eqn source tree
given, so that two commits can be compared in one interleaved run:

    git worktree add /tmp/ab/old OLD; git worktree add /tmp/ab/new NEW
    for i in 1 2 3; do python bench/ab_step.py /tmp/ab/old 2; python bench/ab_step.py /tmp/ab/new 2; done

Arguments: TREE [N] [fixed|anderson]. Prints the compile time, the median of 19 steps and the
last loss (equal losses: the two trees compute the same thing).
"""
import importlib.util
import statistics
import sys
import time

tree = sys.argv[1]
spec = importlib.util.spec_from_file_location("eqn", f"{tree}/__init__.py", submodule_search_locations=[tree])
module = importlib.util.module_from_spec(spec)
sys.modules["eqn"] = module  # this tree's package, whatever `eqn` the environment installs
spec.loader.exec_module(module)
import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import eqn  # noqa: E402
from eqn.runtime import Anderson, FixedStep, estimate, rotate_pairs  # noqa: E402

assert eqn.__file__.startswith(tree), eqn.__file__
model = rotate_pairs(eqn.compile(f"{tree}/models/reciprocal_mlp.eqn"), 0.0)
rng = np.random.default_rng(0)
xs = jnp.asarray(rng.uniform(0, 1, (20, 50, 784)), jnp.float32)
ys = jax.nn.one_hot(jnp.asarray(rng.integers(0, 10, (20, 50))), 10)
if len(sys.argv) > 3 and sys.argv[3] == "anderson":
    solvers = dict(free_solver=Anderson(max_steps=150, tol=5e-5, sweep=True, patience=2),
                   nudged_solver=Anderson(max_steps=20, tol=1e-3, sweep=True, patience=2))
else:
    solvers = dict(free_solver=FixedStep(max_steps=150, tol=0.0), nudged_solver=FixedStep(max_steps=20, tol=0.0))
opts = dict(beta=0.5, n=int(sys.argv[2]) if len(sys.argv) > 2 else 2, **solvers)
opt = optax.sgd(0.01, momentum=0.9)
state = opt.init(eqx.filter(model, eqx.is_array))
@eqx.filter_jit
def step(model, state, x, y, key):
    g, info = estimate(model, x, y, "hep", key=key, **opts)
    u, state = opt.update(g, state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, u), state, info["loss"] + 0 * info["free_steps"]


def timed(i):
    global model, state
    start = time.perf_counter()
    model, state, loss = step(model, state, xs[i], ys[i], jax.random.PRNGKey(i))
    loss.block_until_ready()
    return time.perf_counter() - start, loss


compile_s, _ = timed(0)
runs = [timed(i) for i in range(1, 20)]
median_ms = 1000 * statistics.median(t for t, _ in runs)
print(f"{tree} compile {compile_s:.2f} s step {median_ms:.1f} ms loss {float(runs[-1][1]):.5f}")
