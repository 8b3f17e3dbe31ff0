"""Where the `eqn` command caches compiled programs: the folder each setting chooses, and a cache
that cannot be made turns itself off with a note instead of failing the run. (That the command
writes its training step there and a resumed run reads it back is tested in test_cli_train.)"""

from __future__ import annotations

import platform
from pathlib import Path

import jax
import pytest

from eqn.runtime._compile_cache import cache_folder, enable_compile_cache, machine_tag


def test_machine_tag_names_the_architecture_and_is_stable():
    tag = machine_tag()
    assert tag.startswith(platform.machine() or "cpu")
    assert tag == machine_tag()


@pytest.mark.parametrize("setting", ["off", "OFF", "0", "no", "false", "none", " off "])
def test_the_cache_can_be_turned_off(setting):
    assert cache_folder({"EQN_COMPILE_CACHE": setting, "XDG_CACHE_HOME": "/x"}) is None


def test_the_default_folder_follows_xdg_then_the_home_folder():
    assert cache_folder({"XDG_CACHE_HOME": "/x/cache"}) == Path("/x/cache/eqn/xla") / machine_tag()
    assert cache_folder({}) == Path.home() / ".cache" / "eqn" / "xla" / machine_tag()


def test_a_chosen_folder_gets_one_subfolder_per_kind_of_cpu():
    assert cache_folder({"EQN_COMPILE_CACHE": "/data/c", "XDG_CACHE_HOME": "/x"}) == Path("/data/c") / machine_tag()


def test_the_users_jax_setting_wins():
    env = {"JAX_COMPILATION_CACHE_DIR": "/mine", "EQN_COMPILE_CACHE": "/data/c"}
    assert cache_folder(env) == Path("/mine")
    assert cache_folder({"JAX_COMPILATION_CACHE_DIR": "/mine", "EQN_COMPILE_CACHE": "off"}) == Path("/mine")


def test_a_folder_that_cannot_be_made_turns_the_cache_off_with_a_note(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    before = jax.config.jax_compilation_cache_dir
    assert enable_compile_cache({"EQN_COMPILE_CACHE": str(blocker / "cache")}) is None
    assert jax.config.jax_compilation_cache_dir == before
    err = capsys.readouterr().err
    assert "compiling without a cache" in err and str(blocker) in err and "EQN_COMPILE_CACHE" in err
