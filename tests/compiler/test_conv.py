"""The convolution kernels the compiled modules run: `conv_transpose` is written out by hand
(channels-last, for speed inside loops), so JAX's autodiff of `conv` referees it (float64)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqn.compiler._tensor_ops import conv as _conv, conv_transpose as _conv_transpose


@pytest.mark.parametrize("shape,kernel_size,stride,padding",
                         list(itertools.product([(3, 4, 9, 8), (2, 5, 10, 10)], (2, 3), (1, 2), (0, 1))))
def test_conv_transpose_is_the_adjoint_of_conv(shape, kernel_size, stride, padding):
    channels, out_channels, height, width = shape
    x = jax.random.normal(jax.random.PRNGKey(0), (channels, height, width), jnp.float64)
    kernel = jax.random.normal(jax.random.PRNGKey(1), (out_channels, channels, kernel_size, kernel_size), jnp.float64)
    y, pull = jax.vjp(lambda a: _conv(a, kernel, stride, padding), x)
    h = jax.random.normal(jax.random.PRNGKey(2), y.shape, jnp.float64)
    np.testing.assert_allclose(_conv_transpose(h, kernel, stride, padding, x.shape), pull(h)[0], rtol=1e-12, atol=1e-12)


def test_conv_matches_a_direct_sum():
    """One output pixel of `conv` by hand: Σ_c Σ_ij K[o, c, i, j]·x_pad[c, r + i, s + j]."""
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 5, 6), jnp.float64)
    kernel = jax.random.normal(jax.random.PRNGKey(4), (3, 2, 3, 3), jnp.float64)
    out = _conv(x, kernel, 1, 1)
    padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1)))
    for o, r, s in [(0, 0, 0), (2, 4, 5), (1, 2, 3)]:
        expected = np.sum(np.asarray(kernel)[o] * padded[:, r:r + 3, s:s + 3])
        np.testing.assert_allclose(float(out[o, r, s]), expected, rtol=1e-12)


def test_the_feedback_through_a_conv_derives_into_conv_transpose():
    """`grad(u2 . P(conv(s1, W)), s1)` differentiates conv's input into a conv_transpose node with
    the same kernel, stride and padding: what `eqn show` prints, and what runs channels-last."""
    from helpers import tiny_model
    from eqn.compiler._ir import Op, walk

    program = tiny_model("conv_small").program
    ops = [n for n in walk(program.dynamics["u1"]) if isinstance(n, Op)]
    (transpose,) = [n for n in ops if n.op == "conv_transpose"]
    assert transpose.args[1].name == "W2b" and transpose.attr("padding") == 1 and transpose.attr("stride") == 1
    assert transpose.shape == program.states["u1"]
    assert not any(n.op == "vjp" and n.attr("of") == "conv" and n.attr("index") == 0 for n in ops)
