"""Test setup: float64 everywhere, since the identities are tested to tight tolerances."""

import jax

jax.config.update("jax_enable_x64", True)
