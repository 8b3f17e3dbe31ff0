"""`eqn rules` and `eqn show` on the zoo."""

from __future__ import annotations

import json

import pytest
from helpers import MODELS

from eqn.runtime.cli import main


def test_rules_prints_one_rule_per_parameter_with_reads_and_locality(capsys):
    assert main(["rules", str(MODELS / "hopfield_mlp.eqn")]) == 0
    out = capsys.readouterr().out.splitlines()
    rules = [line for line in out if " ∝ " in line]
    assert [line.split(":")[0].strip() for line in rules] == ["W1", "W2", "b1", "b2"]
    reads = [line.strip() for line in out if line.strip().startswith("reads")]
    assert len(reads) == 4 and all(r.endswith(": local") for r in reads)
    assert "W2 :  ΔW2 ∝ [ rho(o) ⊗ rho(h) ]^β − [ rho(o) ⊗ rho(h) ]^0" in out


@pytest.mark.parametrize("model", sorted(p.name for p in MODELS.glob("*.eqn")))
def test_show_json_parses_with_the_documented_keys(capsys, model):
    assert main(["show", "--json", str(MODELS / model)]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in ("form", "inputs", "target", "states", "params", "holomorphic"):
        assert key in info
    assert info["form"] in ("energy", "flow", "map")
    for group in ("inputs", "target", "states"):
        assert all(isinstance(d, int) for shape in info[group].values() for d in shape)
    for spec in info["params"].values():
        assert all(isinstance(d, int) for d in spec["shape"]) and spec["count"] > 0
    assert info["holomorphic"] is True
    assert sorted(s for block in info["sweep_blocks"] for s in block) == sorted(info["states"])
    assert info["diagonal_block"] in info["sweep_blocks"] or info["diagonal_block"] == []


def test_rules_json_and_show_text(capsys):
    assert main(["rules", "--json", str(MODELS / "untied_leaky.eqn")]) == 0
    rules = json.loads(capsys.readouterr().out)
    assert rules["W12"]["post"] == ["h1"] and rules["W12"]["pre"] == ["h2"] and rules["W12"]["local"]
    assert main(["show", str(MODELS / "hopfield_mlp.eqn")]) == 0
    text = capsys.readouterr().out
    assert "derived flow" in text and "holomorphic  yes" in text
