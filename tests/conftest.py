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
