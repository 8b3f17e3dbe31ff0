"""The solver contract: every phase says per sample how it ended, and the command and the Python
API run the same default budgets from one source."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_model

import eqn
from eqn.runtime._solvers import DEFAULT_SOLVERS, PHASE_DEFAULTS
from eqn.runtime import RESULTS, SOLVERS, Anderson, FixedStep, Solution, TrainConfig, default_solvers, make_solver
from eqn.runtime._estimators import Options
from eqn.runtime.cli import build_parser, main


@pytest.fixture(scope="module")
def hopfield():
    model = tiny_model("hopfield_mlp")
    x = jax.random.uniform(jax.random.PRNGKey(0), (6, 5), jnp.float64)
    return model, x


@pytest.mark.parametrize("solver", [FixedStep(max_steps=3000, tol=1e-10), Anderson(max_steps=3000, tol=1e-10)])
def test_free_with_stats_reports_each_sample(hopfield, solver):
    model, x = hopfield
    state, solution = model.free(x, solver=solver, with_stats=True)
    assert isinstance(solution, Solution)
    assert solution.result.shape == solution.residuals.shape == solution.sample_steps.shape == (6,)
    assert np.all(np.asarray(solution.result) == RESULTS.converged)
    field = model.vector_field(state, x)
    by_hand = np.sqrt(sum(np.sum(np.asarray(v).reshape(6, -1) ** 2, axis=1) for v in field.values()))
    np.testing.assert_allclose(solution.residuals, by_hand, rtol=1e-10)
    assert np.all(np.asarray(solution.sample_steps) <= int(solution.steps))
    assert float(solution.settled) == 1.0


def test_a_short_budget_is_reported_as_running_out(hopfield):
    model, x = hopfield
    _, solution = model.free(x, solver=FixedStep(max_steps=2, tol=1e-12), with_stats=True)
    assert int(solution.steps) == 2
    assert np.all(np.asarray(solution.result) == RESULTS.max_steps)
    assert np.all(np.asarray(solution.residuals) > 1e-12)


@pytest.mark.parametrize("solver", [FixedStep(max_steps=400, tol=1e-8), Anderson(max_steps=400, tol=1e-8)])
def test_a_non_finite_sample_is_named_and_does_not_stop_the_others(hopfield, solver):
    """A NaN input makes one sample non-finite; it never counts as settled, and the rest of the
    batch still runs to its tolerance instead of stopping when the NaN compares false."""
    model, x = hopfield
    bad = x.at[2, 0].set(jnp.nan)
    state, solution = model.free(bad, solver=solver, with_stats=True)
    result = np.asarray(solution.result)
    assert result[2] == RESULTS.nonfinite
    assert np.all(np.delete(result, 2) == RESULTS.converged)
    assert np.all(np.delete(np.asarray(solution.residuals), 2) <= 1e-7)
    assert int(solution.steps) == 400  # the NaN sample keeps the loop running: it never settles


def test_nudged_with_stats(hopfield):
    model, x = hopfield
    y = jax.nn.one_hot(jnp.arange(6) % 3, 3, dtype=jnp.float64)
    free = model.free(x, solver=FixedStep(max_steps=3000, tol=1e-10))
    _, solution = model.nudged(x, y, 0.1, init=free, solver=FixedStep(max_steps=3000, tol=1e-10), with_stats=True)
    assert np.all(np.asarray(solution.converged))


def test_every_solver_is_in_the_registry_and_the_command_offers_it(capsys):
    assert set(SOLVERS) == {"fixed", "anderson"}
    assert isinstance(make_solver("anderson", max_steps=3), Anderson)
    with pytest.raises(ValueError, match="no option"):
        make_solver("fixed", memory=3)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    for option in ("--solver", "--free-solver", "--nudged-solver"):
        assert f"{option} {{{','.join(SOLVERS)}}}" in help_text


def test_a_new_registry_entry_reaches_the_command(monkeypatch):
    class Plain(FixedStep):
        pass

    monkeypatch.setitem(SOLVERS, "plain", Plain)
    args = build_parser("train").parse_args(["train", "m.eqn", "--solver", "plain"])
    assert args.solver == "plain"


def test_the_command_and_the_api_run_the_same_defaults():
    args = build_parser("train").parse_args(["train", "models/hopfield_mlp.eqn"])
    free, nudged = default_solvers()
    model = eqn.compile("hopfield_mlp", consts={"n_h": 4})
    assert (model.free_solver, model.nudged_solver) == (free, nudged)
    assert (args.solver, args.free_steps, args.nudged_steps, args.tol, args.sweep) == (None,) * 5  # each phase's own
    assert (type(free), type(nudged)) == (SOLVERS[DEFAULT_SOLVERS["free"]], SOLVERS[DEFAULT_SOLVERS["nudged"]])
    for phase, solver in (("free", free), ("nudged", nudged)):
        for field, value in PHASE_DEFAULTS[DEFAULT_SOLVERS[phase]][phase].items():
            assert getattr(solver, field) == value, (phase, field)
    config = TrainConfig()
    assert (args.estimator, args.lr, args.momentum, args.epochs, args.batch_size, args.max_residual) == (
        config.estimator, config.lr, config.momentum, config.epochs, config.batch_size, config.max_residual)
    options = Options()
    assert (args.beta, args.n, args.eta, args.noise) == (options.beta, options.n, options.eta, options.noise)


def test_the_command_builds_its_models_with_those_solvers(tmp_path):
    from eqn.runtime._model_options import _compile

    args = build_parser("train").parse_args(["train", "models/hopfield_mlp.eqn", "--const", "n_h=4"])
    model = _compile(args)
    assert (model.free_solver, model.nudged_solver) == default_solvers()
