"""Test setup: float64 everywhere, since the identities are tested to tight tolerances."""

import jax

jax.config.update("jax_enable_x64", True)
# Tests compile many small programs once each: XLA's optimisation passes cost more than they save.
jax.config.update("jax_disable_most_optimizations", True)


import pytest  # noqa: E402


@pytest.fixture
def xla_optimized():
    """For the few tests whose run time (not compile time) dominates: full XLA optimisation."""
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(scope="session", autouse=True)
def eqn_compile_cache(tmp_path_factory):
    """The folder where the `eqn` commands the tests start cache their compiled programs: a
    temporary one, so the tests never write into the user's ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("eqn_compile_cache")
    previous = os.environ.get("EQN_COMPILE_CACHE")
    os.environ["EQN_COMPILE_CACHE"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["EQN_COMPILE_CACHE"]
    else:
        os.environ["EQN_COMPILE_CACHE"] = previous
