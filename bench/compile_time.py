"""How long the eqn compiler takes on every zoo model at full size: parse, check + derive, emit
(building the Equinox module), against XLA's compilation of one vector-field evaluation of the
same model as the baseline measured in the same run.

    python bench/compile_time.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from eqn.compiler import check  # noqa: E402
from eqn.dsl import parse  # noqa: E402
from eqn.runtime import emit  # noqa: E402

MODELS = Path(__file__).resolve().parent.parent / "models"


def best_of(fn, repeats=5):
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    rows, data = [], {}
    for path in sorted(MODELS.glob("*.eqn")):
        text = path.read_text()
        t_parse, module = best_of(lambda: parse(text, str(path)))
        t_check, program = best_of(lambda: check(module))
        key = jax.random.PRNGKey(0)
        emit(program, key)  # the first call compiles the initialisers' kernels in XLA
        t_emit, model = best_of(lambda: emit(program, key))
        total = t_parse + t_check + t_emit
        state = model.init_state(jnp.zeros((1,) + next(iter(program.inputs.values()))))
        x = jnp.zeros((1,) + next(iter(program.inputs.values())))
        field = eqx.filter_jit(lambda m, s, x: m.vector_field(s, x))
        start = time.perf_counter()
        field.lower(model, state, x).compile()
        t_xla = time.perf_counter() - start
        rows.append(f"| {path.stem} | {program.param_count():,} | {1e3 * t_parse:.1f} | {1e3 * t_check:.1f} | "
                    f"{1e3 * t_emit:.1f} | **{1e3 * total:.1f}** | {1e3 * t_xla:.0f} | {total / t_xla:.2f} |")
        data[path.stem] = dict(parse_s=t_parse, check_derive_s=t_check, emit_s=t_emit, total_s=total,
                               xla_field_compile_s=t_xla)
        print(rows[-1], flush=True)
    body = ("Front-end compile time per zoo model at full size (best of 5, warm process). Baseline: XLA's "
            "compile of one jitted vector-field evaluation of the same model, measured in the same run. "
            "Acceptance: total under 1 s.\n\n"
            "| model | params | parse ms | check+derive ms | emit ms | total ms | XLA field compile ms "
            "| total / XLA |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    write_section("compile time", "python bench/compile_time.py", body, {"models": data})
    worst = max(d["total_s"] for d in data.values())
    print(f"slowest front end: {worst:.3f} s")


if __name__ == "__main__":
    main()
