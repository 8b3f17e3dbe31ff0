"""`eqn check` on bad input: every failure exits 1 with a located `FILE:LINE:COL: error:` message
(or `eqn: error: cannot read …` for a missing file), never a Python traceback."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

from eqn.runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
ZOO = sorted(MODELS.glob("*.eqn"))


def located(path: Path | str) -> re.Pattern:
    return re.compile(rf"^{re.escape(str(path))}:(\d+):(\d+): error: (.+)$", re.M)


def run_check(capsys, *paths) -> tuple[int, str, str]:
    code = main(["check", *map(str, paths)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def binary_file(tmp_path: Path) -> Path:
    data = bytearray(random.Random(0).randbytes(512))
    data[3:6] = b"\x00\xff\xfe"  # a NUL and bytes that are never valid UTF-8
    path = tmp_path / "binary.eqn"
    path.write_bytes(bytes(data))
    return path


def truncated_model(tmp_path: Path) -> tuple[Path, int, int]:
    """hopfield_mlp.eqn cut in the middle of the energy, after an operator; (path, line, column)."""
    text = (MODELS / "hopfield_mlp.eqn").read_text()
    cut = text.index("rho(o).(W2 @") + len("rho(o).(W2 @")
    path = tmp_path / "truncated.eqn"
    path.write_text(text[:cut])
    lines = text[:cut].split("\n")
    return path, len(lines), len(lines[-1]) + 1


def test_empty_file(tmp_path, capsys):
    path = tmp_path / "empty.eqn"
    path.write_text("")
    code, out, err = run_check(capsys, path)
    assert code == 1
    assert out == ""
    messages = located(path).findall(err)
    assert [(int(line), int(column)) for line, column, _ in messages] == [(1, 1), (1, 1)]
    assert messages[0][2].startswith("no dynamics") and messages[1][2].startswith("no cost")


def test_binary_file(tmp_path, capsys):
    path = binary_file(tmp_path)
    code, out, err = run_check(capsys, path)
    assert code == 1
    assert out == ""
    messages = located(path).findall(err)
    assert len(messages) == 1
    line, column, message = messages[0]
    assert int(line) >= 1 and int(column) >= 1
    assert "UTF-8" in message or "NUL" in message


def test_nul_in_text_file(tmp_path, capsys):
    path = tmp_path / "nul.eqn"
    path.write_bytes(b"model m\nconst n = 2\x00\n")
    code, _, err = run_check(capsys, path)
    assert code == 1
    assert located(path).findall(err) == [("2", "12", "file contains a NUL byte; is it a binary file?")]


def test_truncated_model(tmp_path, capsys):
    path, line, column = truncated_model(tmp_path)
    code, out, err = run_check(capsys, path)
    assert code == 1
    assert out == ""
    assert located(path).findall(err) == [(str(line), str(column), "unexpected end of file; expected an expression")]
    lines = err.splitlines()
    assert lines[1].strip() == path.read_text().split("\n")[-1].strip()  # the source line
    assert lines[2] == "    " + " " * (column - 1) + "^"  # the caret just after the last token


def test_nonexistent_path(tmp_path, capsys):
    path = tmp_path / "no_such_model.eqn"
    code, out, err = run_check(capsys, path)
    assert code == 1
    assert out == ""
    assert err.strip() == f"eqn: error: cannot read {path}: no such file"


def test_directory_path(tmp_path, capsys):
    code, _, err = run_check(capsys, tmp_path)
    assert code == 1
    assert err.strip() == f"eqn: error: cannot read {tmp_path}: is a directory"


def test_bad_file_does_not_stop_the_others(tmp_path, capsys):
    empty = tmp_path / "empty.eqn"
    empty.write_text("")
    code, out, err = run_check(capsys, empty, ZOO[0])
    assert code == 1
    assert f"{ZOO[0]}: ok" in out
    assert located(empty).search(err)


def test_zoo_checks_clean(capsys):
    code, out, err = run_check(capsys, *ZOO)
    assert code == 0
    assert "error" not in err
    assert [line.split(": ok")[0] for line in out.splitlines()] == [str(p) for p in ZOO]


def test_subprocess_reports_every_kind_of_bad_file(tmp_path):
    empty = tmp_path / "empty.eqn"
    empty.write_text("")
    binary = binary_file(tmp_path)
    truncated, line, column = truncated_model(tmp_path)
    missing = tmp_path / "missing.eqn"
    result = subprocess.run([sys.executable, "-m", "eqn.runtime.cli", "check", str(empty), str(binary),
                             str(truncated), str(missing)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    assert located(empty).search(result.stderr)
    assert located(binary).search(result.stderr)
    assert f"{truncated}:{line}:{column}: error: unexpected end of file" in result.stderr
    assert f"eqn: error: cannot read {missing}: no such file" in result.stderr


def test_subprocess_zoo_exits_zero():
    result = subprocess.run([sys.executable, "-m", "eqn.runtime.cli", "check", *map(str, ZOO)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.count(": ok (") == len(ZOO)
