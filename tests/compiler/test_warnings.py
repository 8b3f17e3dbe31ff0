"""Warnings: a model that compiles but probably does not say what its author meant gets a located
warning, and a model that says it gets none."""

from __future__ import annotations

from helpers import MODELS

import eqn
from eqn.runtime.cli import main

READOUT = """model readout
input x[4]
target y[3]
state u[5] output
param W[5, 4] ~ glorot
param V[5, 5] ~ glorot
param R[3, 5] ~ glorot
u <- tanh(W @ x + V @ u)
let scores = R @ u
cost C = logsumexp(scores) - y . scores
"""


def _warnings(source: str) -> list[tuple[int, int, str]]:
    return [(w.span.line, w.span.column, w.message) for w in eqn.load(source).warnings]


def test_a_trained_readout_without_predict_is_pointed_out_at_the_cost():
    [(line, column, message)] = _warnings(READOUT)
    assert (line, column) == (10, 1)
    assert "the cost trains a readout (R) that no 'predict' uses" in message
    assert "argmax of the output state 'u'" in message


def test_no_readout_warning_when_predicted_or_when_the_cost_reads_states_only():
    assert _warnings(READOUT + "predict scores\n") == []
    states_only = """model states_only
input x[4]
target y[3]
state u[3] output
param W[3, 4] ~ glorot
u <- tanh(W @ x)
cost C = 0.5 * sum((u - y)^2)
"""
    assert _warnings(states_only) == []


def test_an_unused_declaration_is_pointed_out():
    source = READOUT.replace("param R", "param Q[2] ~ zeros\nparam R") + "predict scores\n"
    [(line, column, message)] = _warnings(source)
    assert (line, column, message) == (7, 7, "param 'Q' is never used")


def test_the_zoo_compiles_without_warnings():
    for path in sorted(MODELS.glob("*.eqn")):
        assert eqn.load(path).warnings == [], path.name


def test_eqn_check_prints_the_warning_with_its_line(tmp_path, capsys):
    path = tmp_path / "readout.eqn"
    path.write_text(READOUT)
    assert main(["check", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"{path}:10:1: warning: the cost trains a readout (R)" in err
    assert "cost C = logsumexp(scores) - y . scores" in err
