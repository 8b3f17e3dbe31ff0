"""The zoo by name: `eqn models` lists every model shipped in eqn.models with its first sentence,
and every command that takes a model file also takes a zoo name (a file of that name wins)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from eqn.compiler import zoo
from eqn.runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_eqn_models_lists_every_zoo_file_with_its_first_sentence(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = sorted(p.stem for p in (ROOT / "models").glob("*.eqn"))
    assert [line.split()[0] for line in lines] == names == list(zoo())
    hopfield = next(line for line in lines if line.startswith("hopfield_mlp "))
    assert hopfield.split(None, 1)[1] == "Hopfield MLP (holomorphic-ep.txt App. B.1)"


def test_commands_take_zoo_names_and_say_so_when_a_name_is_unknown(tmp_path):
    result = subprocess.run([sys.executable, "-m", "eqn.runtime.cli", "check", "hopfield_mlp", "no_such_model"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 1
    assert result.stdout == "hopfield_mlp: ok (energy, 2 states, 407050 parameters, holomorphic)\n"
    assert result.stderr == ("eqn: error: cannot read no_such_model: no such file or zoo model "
                             "(`eqn models` lists them)\n")
