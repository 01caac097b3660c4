"""`jaxattr._interpret`: evaluating a jaxpr with overridden equations inside every
kind of body (scan, while, cond, jit, checkpoint, custom_jvp, custom_vjp)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxattr import _interpret

X = jnp.asarray([0.3, -1.2, 0.7], jnp.float32)


class SinToCos(_interpret.Override):
    """Every `sin` evaluated as `cos`: a change that the values show."""

    def apply(self, eqn, invals):
        if eqn.primitive is lax.sin_p:
            return [lax.cos(*invals)]
        return None


def _program(kind, trig):
    """`trig` applied inside a body of the given kind, with a scalar output."""
    g = lambda z: trig(2.0 * z) + z
    if kind == "plain":
        inner = g
    elif kind == "scan":
        inner = lambda z: lax.scan(
            lambda c, s: (g(c * s), c), z, jnp.array([1.0, 0.5])
        )[0]
    elif kind == "while":
        step = lambda c: (c[0] + 1, g(c[1]))
        inner = lambda z: lax.while_loop(lambda c: c[0] < 2, step, (0, z))[1]
    elif kind == "cond":
        inner = lambda z: lax.cond(z.sum() > -1e3, g, lambda u: -u, z)
    elif kind == "jit":
        inner = jax.jit(g)
    elif kind == "checkpoint":
        inner = jax.checkpoint(g)
    elif kind == "custom_jvp":
        inner = jax.custom_jvp(g)
        inner.defjvp(lambda p, t: (inner(p[0]), 5.0 * t[0]))
    else:
        assert kind == "custom_vjp"
        inner = jax.custom_vjp(g)
        inner.defvjp(lambda z: (inner(z), None), lambda _, ct: (7.0 * ct,))
    return lambda x: jnp.sum(jnp.tanh(inner(x)))


KINDS = (
    "plain",
    "scan",
    "while",
    "cond",
    "jit",
    "checkpoint",
    "custom_jvp",
    "custom_vjp",
)
DIFFERENTIABLE = ("plain", "scan", "cond", "jit", "checkpoint")


def _interpreted(fn, override):
    return lambda *args: _interpret.run(fn, args, lambda closed: override)


@pytest.mark.parametrize("kind", KINDS)
def test_override_reaches_every_body(kind):
    """`sin` overridden as `cos` inside the body gives the program written with
    `cos`; derivatives follow the body (or the custom rule, which is kept)."""
    fn = _interpreted(_program(kind, jnp.sin), SinToCos())
    want = _program(kind, jnp.cos)
    np.testing.assert_allclose(fn(X), want(X), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(fn)(X), want(X), rtol=1e-6)
    assert not np.allclose(fn(X), _program(kind, jnp.sin)(X))  # it can fail
    if kind in DIFFERENTIABLE:
        np.testing.assert_allclose(jax.grad(fn)(X), jax.grad(want)(X), rtol=1e-5)
    if kind in ("custom_jvp", "custom_vjp"):
        # the rule is the original's, evaluated at the original (sin) program
        np.testing.assert_allclose(
            jax.grad(fn)(X), jax.grad(_program(kind, jnp.sin))(X), rtol=1e-6
        )


@pytest.mark.parametrize("kind", KINDS)
def test_default_override_changes_nothing(kind):
    fn = _program(kind, jnp.sin)
    same = _interpreted(fn, _interpret.Override())
    np.testing.assert_array_equal(jax.jit(same)(X), jax.jit(fn)(X))
    np.testing.assert_array_equal(jax.vmap(same)(X[:, None]), jax.vmap(fn)(X[:, None]))
    if kind not in ("while",):
        np.testing.assert_array_equal(jax.grad(same)(X), jax.grad(fn)(X))


def test_descends_false_keeps_a_body_as_it_is():
    class NotInCond(SinToCos):
        def descends(self, eqn):
            return eqn.primitive.name != "cond"

    fn = _interpreted(_program("cond", jnp.sin), NotInCond())
    np.testing.assert_array_equal(fn(X), _program("cond", jnp.sin)(X))
    fn = _interpreted(_program("scan", jnp.sin), NotInCond())
    np.testing.assert_allclose(fn(X), _program("scan", jnp.cos)(X), rtol=1e-6)


def test_inside_gives_the_override_of_each_body():
    """`inside` is asked once per body, with the body it is for."""
    seen = []

    class Record(SinToCos):
        def inside(self, eqn, body):
            seen.append((eqn.primitive.name, len(body.jaxpr.invars)))
            return self

    _interpret.run(_program("while", jnp.sin), [X], lambda closed: Record())
    assert [name for name, _ in seen] == ["while", "while"]  # condition, body


def test_bodies_match_inputs_and_outputs():
    def f(a, b, c):
        carry, ys = lax.scan(lambda k, x: (k * a + x, k), b, c)
        return carry, ys

    a, b, c = jnp.ones(()), jnp.ones(2), jnp.ones((3, 2))
    (eqn,) = [
        e for e in jax.make_jaxpr(f)(a, b, c).jaxpr.eqns if e.primitive.name == "scan"
    ]
    (body,) = _interpret.bodies(eqn)
    assert body.inputs == (0, 1, 2)  # const a, carry b, scanned c
    assert body.fed_back == (None, 0, None)  # the carry takes output 0
    assert body.outputs == (0, 1)

    def g(n, z):
        return lax.while_loop(
            lambda s: s[0] < n, lambda s: (s[0] + 1, s[1] * z), (0, z)
        )

    jaxpr = jax.make_jaxpr(g)(3, jnp.ones(2)).jaxpr
    (eqn,) = [e for e in jaxpr.eqns if e.primitive.name == "while"]
    cond, loop = _interpret.bodies(eqn)
    nc, nb = eqn.params["cond_nconsts"], eqn.params["body_nconsts"]
    assert (nc, nb) == (1, 1)
    assert cond.inputs == (0, 2, 3) and cond.fed_back == (None, 0, 1)
    assert cond.outputs == (None,)  # the predicate
    assert loop.inputs == (1, 2, 3) and loop.fed_back == (None, 0, 1)
    assert loop.outputs == (0, 1)

    jaxpr = jax.make_jaxpr(lambda i, z: lax.cond(i > 0, jnp.sin, jnp.cos, z))(1, X)
    (eqn,) = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "cond"]
    for branch in _interpret.bodies(eqn):
        assert branch.inputs == (1,) and branch.outputs == (0,)
    assert _interpret.bodies(jaxpr.jaxpr.eqns[0]) == []  # not higher-order
