"""Speed and scale of a training step, with the baselines measured in the same run.

    python bench/speed.py            # writes the "speed" section of RESULTS.md and results/speed.json
    python bench/speed.py --quick    # fewer repeats, for a smoke test

Reference configuration (issue 4): the reciprocal asymmetric MLP 784-256-256-10, batch 50,
|β| = 0.5, hEP with N = 2, 4, 6 with and without the homeostatic loss, on real Fashion-MNIST
images, after 300 warm-up training steps (at initialisation the dynamics contract in a few steps
and every solver looks fast). Each configuration runs four times: "fixed" (exactly 150 free and
20 nudged steps per phase, the papers' setting), "fast" (Anderson acceleration with the same step
budgets, block Gauss–Seidel sweeps over the compiler's blocks and Anderson's stall rule, stopping as
soon as every sample is three times closer to its fixed point than the fixed run left the worst one),
"plain+tol" (plain steps stopping as soon as every sample is as close as the fixed run left the worst
one) and "sweep+tol" (block Gauss–Seidel sweeps, no extrapolation, the same stopping rule). The
fast solver also runs on four more batches, to show that one batch is not a lucky draw. Also the
Hopfield MLP, the predictive-coding net and the small CNN. Baselines: the machine's float32 matmul peak, a backprop step of the equivalent
feed-forward network with optax, and `rbp` (the exact gradient) for the cosine. Where the free phase's share of
the peak comes from: the free phase and its matmuls alone at batches 50 to 350, and both on one pinned core (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

import eqn  # noqa: E402
from eqn.runtime import Anderson, FixedStep, estimate, load_dataset, rotate_pairs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BATCH = 50
LARGER_BATCHES = (100, 200, 350)  # data() loads 7 batches


def timed(fn, *args, repeats: int) -> float:
    """Median wall time of fn(*args) in seconds (after one warm call)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(repeats: int) -> dict:
    """Best float32 GFLOP/s of a square matmul through JAX on this machine."""
    best = {}
    for n in (1024, 2048, 4096):
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        seconds = timed(jax.jit(lambda a, b: a @ b), a, a + 1, repeats=repeats)
        best[n] = 2 * n**3 / seconds / 1e9
    return {"gflops": max(best.values()), "by_size": best}


def matmul_chain(repeats: int, steps: int = 150, hidden: int = 256, batch: int = BATCH) -> dict:
    """GFLOP/s of the free phase's matmuls alone: `steps` dependent pairs of [batch, hidden] ×
    [hidden, hidden] products in a `lax` loop, with nothing else. The ceiling for a free phase of
    this shape on this machine."""
    w = jax.random.normal(jax.random.PRNGKey(0), (2, hidden, hidden), jnp.float32) / hidden
    a = jax.random.normal(jax.random.PRNGKey(1), (2, batch, hidden), jnp.float32)

    @jax.jit
    def chain(w, a):
        return jax.lax.fori_loop(0, steps, lambda _, a: jnp.stack([a[1] @ w[0], a[0] @ w[1]]), a)

    seconds = timed(chain, w, a, repeats=repeats)
    return {"gflops": 2 * 2 * batch * hidden * hidden * steps / seconds / 1e9, "ms": 1000 * seconds}


ONE_CORE_PROBE = """
import json, os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
sys.path.insert(0, sys.argv[1])
import speed
repeats = int(sys.argv[2])
print(json.dumps({"peak": speed.matmul_peak(repeats)["gflops"], "chain": speed.matmul_chain(repeats)["gflops"]}))
"""


def one_core(repeats: int) -> dict | None:
    """The matmul peak and the batch-50 chain in a fresh process pinned to one core (Linux): whether
    XLA runs the free phase's small products on one core or on all of them. None where a process
    cannot be pinned."""
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        return None
    out = subprocess.run([sys.executable, "-c", ONE_CORE_PROBE, str(Path(__file__).parent), str(repeats)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def data(model, count=BATCH):
    """Real Fashion-MNIST images fitted to the model's input (flattened or zero-padded)."""
    train = load_dataset("fashion_mnist", "train")
    (shape,) = model.program.inputs.values()
    images = train.images[:count * 7]
    if len(shape) == 1:
        images = images.reshape(len(images), -1)
    elif images.shape[-1] != shape[-1]:
        pad = (shape[-1] - images.shape[-1]) // 2
        images = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    labels = jax.nn.one_hot(train.labels[:count * 7], 10)
    return jnp.asarray(images), jnp.asarray(labels)


# The fast runs stop each phase at a third of the residual the fixed run left its worst sample at.
# At exactly that residual the fast solver matches the fixed run's worst sample but leaves every
# sample near it, while 150 fixed steps carry most samples far below it (median 3e-6 against
# 1.1e-4): the gradient's cosine with rbp was then 0.0014 lower than fixed's (hand notes).
FAST_TOL_FRACTION = 1 / 3


def fast_solver(max_steps: int, tol: float) -> Anderson:
    """The accelerated solver every "fast" row uses: Anderson on block Gauss–Seidel sweeps, with the
    stall rule (a sample that stagnates takes plain sweeps while those are seen to help)."""
    return Anderson(max_steps=max_steps, tol=tol, sweep=True, patience=2)


def fixed_length_options(n: int, **extra) -> dict:
    """hEP with N points at |β| = 0.5 and the papers' fixed phases: exactly 150 free and 20 nudged steps."""
    return dict(beta=0.5, n=n, free_solver=FixedStep(max_steps=150, tol=0.0),
                nudged_solver=FixedStep(max_steps=20, tol=0.0), **extra)


def fast_options(fixed_options: dict, fixed: dict) -> dict:
    """`fixed_options` with the fast solver in every phase, stopping at `FAST_TOL_FRACTION` of the
    residuals the fixed run (`measure`'s result) ended with."""
    return dict(fixed_options, free_solver=fast_solver(150, FAST_TOL_FRACTION * fixed["free_residual"]),
                nudged_solver=fast_solver(20, FAST_TOL_FRACTION * fixed["nudged_residual"]))


def make_step(estimator: str, options: dict, optimizer):
    @eqx.filter_jit
    def step(model, opt_state, x, y, key):
        grads, info = estimate(model, x, y, estimator, key=key, **options)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, grads, info

    return step


def warm_up(model, xs, ys, steps: int):
    """Train with hEP N = 2 for `steps` batches so the dynamics are those of a learning network."""
    optimizer = optax.sgd(0.01, momentum=0.9)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    # the free budget pinned to the 200 steps eqn.compile's default had when these figures began
    step = make_step("hep", dict(beta=0.5, n=2, free_solver=FixedStep(max_steps=200, tol=1e-5),
                                 nudged_solver=FixedStep(max_steps=20, tol=1e-5)), optimizer)
    for i in range(steps):
        j = i % (xs.shape[0] // BATCH)
        model, opt_state, _, _ = step(model, opt_state, xs[j * BATCH:(j + 1) * BATCH], ys[j * BATCH:(j + 1) * BATCH],
                                      jax.random.PRNGKey(i))
    return model


def cosine(a, b) -> float:
    fa = jnp.concatenate([jnp.ravel(v) for v in jax.tree_util.tree_leaves(a)])
    fb = jnp.concatenate([jnp.ravel(v) for v in jax.tree_util.tree_leaves(b)])
    return float(jnp.dot(fa, fb) / (jnp.linalg.norm(fa) * jnp.linalg.norm(fb)))


def field_flops(model, x) -> float:
    """XLA's flop count of one step of the free phase: one evaluation of the phase's field, whose
    state-independent part (the input drive) is computed once per phase, not per step. Counted as
    the difference between two evaluations and one of the same prepared field."""
    state = model.init_state(x)

    def flops(evaluations):
        def run(m, u, x):
            field = m.phase_field(x)
            for _ in range(evaluations):
                u = {k: u[k] + field(u)[k] for k in u}
            return u
        analysis = jax.jit(run).lower(model, state, x).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list) else analysis
        return float(analysis["flops"])

    return flops(2) - flops(1)


def measure(model, x, y, estimator, options, repeats) -> dict:
    """Compile time, median step time and what one training step did."""
    optimizer = optax.sgd(0.01, momentum=0.9)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    step = make_step(estimator, options, optimizer)
    key = jax.random.PRNGKey(1)
    start = time.perf_counter()
    compiled = step.lower(model, opt_state, x, y, key).compile()
    compile_s = time.perf_counter() - start
    seconds = timed(compiled, model, opt_state, x, y, key, repeats=repeats)
    _, _, grads, info = compiled(model, opt_state, x, y, key)
    return {"compile_s": compile_s, "step_ms": 1000 * seconds, "samples_per_s": x.shape[0] / seconds,
            "free_steps": int(info.get("free_steps", 0)), "nudged_steps": int(info.get("nudged_steps", 0)),
            "field_evaluations": int(info["field_evaluations"]),
            "free_residual": float(info.get("free_residual", float("nan"))),
            "nudged_residual": float(info.get("nudged_residual", float("nan"))), "grads": grads}


def free_phase_rate(model, x, steps: int, repeats: int) -> dict:
    """Achieved GFLOP/s of a fixed-length free phase (its flops counted by XLA, per step)."""
    solver = FixedStep(max_steps=steps, tol=0.0)
    run = eqx.filter_jit(lambda m, x: m.free(x, solver=solver))
    seconds = timed(run, model, x, repeats=repeats)
    flops = field_flops(model, x) * steps
    return {"ms": 1000 * seconds, "gflops": flops / seconds / 1e9}


def feedforward_backprop(x, y, repeats) -> dict:
    """The baseline: one optax SGD step of backprop through the feed-forward 784-256-256-10 net."""
    sizes = [784, 256, 256, 10]
    keys = jax.random.split(jax.random.PRNGKey(0), len(sizes) - 1)
    params = [(jax.random.normal(k, (a, b)) / np.sqrt(a), jnp.zeros(b)) for k, a, b in zip(keys, sizes, sizes[1:])]
    optimizer = optax.sgd(0.01, momentum=0.9)
    opt_state = optimizer.init(params)

    def loss(params, x, y):
        h = x
        for w, b in params[:-1]:
            h = jax.nn.sigmoid(h @ w + b)
        w, b = params[-1]
        return optax.softmax_cross_entropy(h @ w + b, y).mean()

    @jax.jit
    def step(params, opt_state, x, y):
        grads = jax.grad(loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    seconds = timed(step, params, opt_state, x, y, repeats=repeats)
    return {"step_ms": 1000 * seconds, "samples_per_s": x.shape[0] / seconds}


def peak_memory(model, x, y, estimator: str, steps: int) -> int:
    """Bytes XLA reserves for one gradient estimate (arguments, outputs and temporaries)."""
    solver = FixedStep(max_steps=steps, tol=0.0)
    options = dict(beta=0.5, n=2, free_solver=solver, nudged_solver=FixedStep(max_steps=20, tol=0.0),
                   bptt_steps=steps)
    fn = eqx.filter_jit(lambda m, x, y: estimate(m, x, y, estimator, **options)[0])
    stats = fn.lower(model, x, y).compile().compiled.memory_analysis()
    return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes)


def other_batches(model, xs, ys, exact_solver, count: int = 5) -> list[dict]:
    """hEP N = 2 on the first `count` batches: fixed against fast, each phase's tolerance set from
    that batch's fixed run, with both gradients' cosines against that batch's `rbp`."""
    rows = []
    for b in range(count):
        x, y = xs[b * BATCH:(b + 1) * BATCH], ys[b * BATCH:(b + 1) * BATCH]
        fixed_options = fixed_length_options(2)
        fixed = measure(model, x, y, "hep", fixed_options, 1)
        fast = measure(model, x, y, "hep", fast_options(fixed_options, fixed), 1)
        exact = measure(model, x, y, "rbp", dict(free_solver=exact_solver), 1)
        rows.append({"batch": b, "fixed_free_residual": fixed["free_residual"],
                     "fixed_nudged_residual": fixed["nudged_residual"], "fixed_cosine": cosine(fixed["grads"], exact["grads"]),
                     **{k: fast[k] for k in ("free_steps", "nudged_steps", "field_evaluations", "free_residual",
                                             "nudged_residual")},
                     "cosine": cosine(fast["grads"], exact["grads"])})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 10
    warm_steps = 30 if args.quick else 300
    results: dict = {"matmul_peak": matmul_peak(repeats)}
    peak = results["matmul_peak"]["gflops"]
    print(f"matmul peak {peak:.0f} GFLOP/s", flush=True)

    reference = rotate_pairs(eqn.compile(ROOT / "models" / "reciprocal_mlp.eqn"), 0.0)
    xs, ys = data(reference)
    x, y = xs[:BATCH], ys[:BATCH]
    reference = warm_up(reference, xs, ys, warm_steps)
    results["free_phase"] = free_phase_rate(reference, x, 150, repeats)
    results["matmul_chain"] = matmul_chain(repeats)
    # where the peak becomes reachable: the same free phase and chain at larger batches, and one core alone
    results["by_batch"] = {b: {"free_phase": free_phase_rate(reference, xs[:b], 150, repeats),
                               "matmul_chain": matmul_chain(repeats, batch=b)} for b in LARGER_BATCHES}
    results["one_core"] = one_core(repeats)
    results["backprop_feedforward"] = feedforward_backprop(x, y, repeats)
    exact_solver = FixedStep(max_steps=2000, tol=1e-6)
    rows = []
    for n in (2, 4, 6):
        for homeostasis in (0.0, 1.0):
            fixed_options = fixed_length_options(n, homeostasis=homeostasis, homeostasis_samples=5)
            fixed = measure(reference, x, y, "hep", fixed_options, repeats)
            fast = measure(reference, x, y, "hep", fast_options(fixed_options, fixed), repeats)
            # "at the same final residual": the plain runs stop as soon as every sample is as close
            # to its fixed point as the fixed-length phase left the worst one
            free_tol, nudged_tol = fixed["free_residual"], fixed["nudged_residual"]
            plain_options = dict(fixed_options, free_solver=FixedStep(max_steps=150, tol=free_tol),
                                 nudged_solver=FixedStep(max_steps=20, tol=nudged_tol))
            plain = measure(reference, x, y, "hep", plain_options, repeats)
            sweep_options = dict(fixed_options, free_solver=FixedStep(max_steps=150, tol=free_tol, sweep=True),
                                 nudged_solver=FixedStep(max_steps=20, tol=nudged_tol, sweep=True))
            swept = measure(reference, x, y, "hep", sweep_options, repeats)
            # the referee: the exact loss gradient plus the same homeostatic term (same key, same probes)
            exact = measure(reference, x, y, "rbp", dict(free_solver=exact_solver, homeostasis=homeostasis,
                                                         homeostasis_samples=5), 1)
            for name, r in (("fixed", fixed), ("fast", fast), ("plain+tol", plain), ("sweep+tol", swept)):
                r["cosine_rbp"] = cosine(r.pop("grads"), exact["grads"])
                rows.append({"model": "reciprocal_mlp", "n": n, "homeostasis": homeostasis, "solver": name, **r})
                print(rows[-1], flush=True)

    results["batches"] = other_batches(reference, xs, ys, exact_solver)

    for name, estimator, options in [
        ("hopfield_mlp", "hep", dict(beta=0.5, n=2)),
        ("predictive_coding", "hep", dict(beta=0.5, n=2)),
        ("conv_small", "hep", dict(beta=0.5, n=2)),
    ]:
        model = eqn.compile(ROOT / "models" / f"{name}.eqn")
        mx, my = data(model, count=BATCH)
        for solver_name, make in (("fixed", lambda k: FixedStep(max_steps=k, tol=0.0)),
                                  ("fast", lambda k: fast_solver(k, 1e-5))):
            opts = dict(options, free_solver=make(150), nudged_solver=make(20))
            r = measure(model, mx[:BATCH], my[:BATCH], estimator, opts, max(2, repeats // 3))
            r.pop("grads")
            rows.append({"model": name, "n": 2, "homeostasis": 0.0, "solver": solver_name, **r})
            print(rows[-1], flush=True)

    compile_times = {}
    for name in ("hopfield_mlp", "reciprocal_mlp", "untied_leaky", "output_feedback", "predictive_coding",
                 "rnn_symmetric", "rnn_untied"):
        model = eqn.compile(ROOT / "models" / f"{name}.eqn")
        mx, my = data(model, count=BATCH)
        r = measure(model, mx[:BATCH], my[:BATCH], "hep",
                    dict(beta=0.5, n=2, nudged_solver=FixedStep(max_steps=20, tol=1e-5)), 1)
        compile_times[name] = r["compile_s"]
    results["compile_s"] = compile_times

    memory = {}
    for steps in (100, 400, 1600):
        memory[steps] = {e: peak_memory(reference, x, y, e, steps) for e in ("hep", "bptt")}
    results["memory_bytes"] = memory
    results["rows"] = rows
    write_section("speed", "python bench/speed.py" + (" --quick" if args.quick else ""), report(results), results)


def report(results: dict) -> str:
    peak = results["matmul_peak"]["gflops"]
    free = results["free_phase"]
    bp = results["backprop_feedforward"]
    lines = [
        f"Baselines measured in this run: float32 matmul peak **{peak:.0f} GFLOP/s** (best of square sizes "
        f"{', '.join(str(k) for k in results['matmul_peak']['by_size'])}); backprop step of the feed-forward "
        f"784-256-256-10 net with optax: **{bp['step_ms']:.2f} ms** ({bp['samples_per_s']:.0f} samples/s).",
        "",
        f"Free phase of the reference configuration (150 steps, batch {BATCH}): {free['ms']:.1f} ms, "
        f"**{free['gflops']:.0f} GFLOP/s = {100 * free['gflops'] / peak:.0f} % of the matmul peak** (flops of one "
        "field evaluation counted by XLA). Its two 256×256 matmuls per step, chained alone in a `lax` loop "
        f"(nothing else), run at {results['matmul_chain']['gflops']:.0f} GFLOP/s = "
        f"{100 * results['matmul_chain']['gflops'] / peak:.0f} % of the peak: the ceiling for this shape here.",
        "",
        *ceiling_report(results),
        "Training steps (reciprocal MLP after warm-up). \"fixed\": exactly 150 free steps and 20 per nudged phase. "
        "\"fast\": `Anderson(sweep=True, patience=2)` (Anderson acceleration of block Gauss–Seidel sweeps, with the "
        "stall rule) with tolerance stopping, the same budgets, and each phase's tolerance set to "
        "a third of the residual the fixed run ended with (a final residual at most the fixed run's; see "
        "`FAST_TOL_FRACTION`). \"plain+tol\" and \"sweep+tol\": plain steps and sweeps without extrapolation, "
        "stopping at the fixed run's residual, to separate the acceleration from the stopping rule. Other models: \"fast\" stops at "
        "‖F‖ ≤ 1e-5. Residuals are the largest over the batch. Field evaluations count every phase "
        "actually run (conjugate β pairs run once); the issue's fixed budget is 150 + N·20. The cosine is against "
        "`rbp` with the same homeostatic term.",
        "",
        "| model | N | λ | solver | compile s | step ms | samples/s | free evals | nudged evals/phase | evals/step "
        "| 150+N·20 ÷ evals | free res | nudged res | cos vs rbp |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        budget = 150 + r["n"] * 20
        lines.append(
            f"| {r['model']} | {r['n']} | {r['homeostasis']:g} | {r['solver']} | {r['compile_s']:.2f} | "
            f"{r['step_ms']:.1f} | {r['samples_per_s']:.0f} | {r['free_steps']} | {r['nudged_steps']} | "
            f"{r['field_evaluations']} | {budget / max(r['field_evaluations'], 1):.1f}× | {r['free_residual']:.1e} | "
            f"{r['nudged_residual']:.1e} | {r.get('cosine_rbp', float('nan')):.4f} |")
    lines += ["", "The fast solver on the first five batches (hEP N = 2, λ = 0; tolerances a third of each batch's fixed run's; "
              "res ratio = fast's final residual over fixed's, ≤ 1 is the same final residual or better):", "",
              "| batch | evals/step | 190 ÷ evals | free evals | nudged evals/phase | free res ratio | nudged res ratio "
              "| cos vs rbp, fixed | cos vs rbp, fast |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results["batches"]:
        lines.append(
            f"| {r['batch']} | {r['field_evaluations']} | {190 / max(r['field_evaluations'], 1):.1f}× | {r['free_steps']} | "
            f"{r['nudged_steps']} | {r['free_residual'] / r['fixed_free_residual']:.2f} | "
            f"{r['nudged_residual'] / r['fixed_nudged_residual']:.2f} | {r['fixed_cosine']:.4f} | {r['cosine']:.4f} |")
    lines += ["", "XLA compile time of a training step (hEP N = 2), every MLP of the zoo:", "",
              "| model | compile s |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in results["compile_s"].items()]
    lines += ["", "Memory XLA reserves for one gradient estimate (arguments + outputs + temporaries), reciprocal MLP, "
              "batch 50:", "", "| T (free steps) | hEP N = 2 | BPTT |", "|---|---|---|"]
    lines += [f"| {t} | {m['hep'] / 2**20:.1f} MiB | {m['bptt'] / 2**20:.1f} MiB |" for t, m in results["memory_bytes"].items()]
    return "\n".join(lines)


def ceiling_report(results: dict) -> list[str]:
    """Where the free phase's share of the peak comes from: the batch, and how many cores XLA uses."""
    peak = results["matmul_peak"]["gflops"]
    rows = {BATCH: {"free_phase": results["free_phase"], "matmul_chain": results["matmul_chain"]},
            **{int(b): r for b, r in results.get("by_batch", {}).items()}}
    lines = ["The same free phase (the trained reference model, 150 steps) and the same matmul chain at larger "
             "batches, as a share of the same peak:", "",
             "| batch | free phase GFLOP/s | free phase % of peak | chain GFLOP/s | chain % of peak |",
             "|---|---|---|---|---|"]
    for b, r in sorted(rows.items()):
        lines.append(f"| {b} | {r['free_phase']['gflops']:.0f} | {100 * r['free_phase']['gflops'] / peak:.0f} % | "
                     f"{r['matmul_chain']['gflops']:.0f} | {100 * r['matmul_chain']['gflops'] / peak:.0f} % |")
    one = results.get("one_core")
    if one:
        both = results["matmul_chain"]["gflops"]
        lines += ["", f"One core alone (a process pinned to one CPU): matmul peak {one['peak']:.0f} GFLOP/s; the batch-{BATCH} "
                  f"chain runs at {one['chain']:.0f} GFLOP/s there, {100 * one['chain'] / one['peak']:.0f} % of that core's "
                  f"peak, and at {both:.0f} GFLOP/s ({both / one['chain']:.2f}×) with both cores."]
        if both < 1.1 * one["chain"]:
            lines[-1] += (f" A second core does not speed up {BATCH}×256 by 256×256 products (at most 10 %), so the "
                          f"free phase at batch {BATCH} cannot pass about {100 * max(one['chain'], both) / peak:.0f} % "
                          "of the two-core peak, the share of its matmuls' best rate.")
    return lines + [""]


if __name__ == "__main__":
    main()
