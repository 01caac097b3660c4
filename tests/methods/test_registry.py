"""Every method of `jaxattr.registry.METHODS`, through `registry.explainer`: under `jit`,
under `vmap` over images and targets (against a loop), with one key twice (the same
result) and another key (a different result exactly for the methods that draw random
numbers), in float32 and float64, exact completeness on a linear model where the
registry says it holds, and a clear error on each bad input.

One tiny Flax CNN (a biased convolution, ReLU, mean, dense: 8x8x3 -> 5 logits, built
from `jaxattr.models.layers` so that FullGrad sees its biases), few steps, and one
compiled function per method shared by the tests.
"""

from __future__ import annotations

import functools
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import jaxattr
from jaxattr import models, registry
from jaxattr.models import layers


class TinyCNN(nn.Module):
    """`[N, 8, 8, 3] -> [N, 5]`."""

    bn_epsilon: float = 1e-5  # read by `fullgrad_model` (no BatchNorm here)

    @nn.compact
    def __call__(self, x):
        h = nn.relu(layers.conv(self, x, "conv", 4, 3, stride=2, use_bias=True))
        return layers.dense(self, h.mean(axis=(1, 2)), "fc", 5)


def _model() -> models.Model:
    module = TinyCNN()
    rng = np.random.default_rng(0)
    shapes = {
        "conv": {"kernel": (3, 3, 3, 4), "bias": (4,)},
        "fc": {"kernel": (4, 5), "bias": (5,)},
    }
    params = jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.normal(0, 0.5, s), jnp.float32),
        shapes,
        is_leaf=lambda s: isinstance(s, tuple),
    )
    variables = {"params": params}

    def apply(v, x):
        return module.apply(v, x)

    return models.Model(
        Partial(apply, variables),
        apply,
        module,
        variables,
        (8, 8),
        tuple("abcde"),
        "tiny_cnn",
        lambda x: x,
    )


MODEL = _model()
XS = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
TARGETS = jnp.array([1, 3])
REFS = jax.random.uniform(jax.random.key(1), (3, 8, 8, 3))
KEY = jax.random.key(42)
NAMES = tuple(registry.METHODS)

# Cheap settings beyond a step count of 3 (`registry.count_kwargs`).
CHEAP = {
    "adaptive_integrated_gradients": {"initial_intervals": 2, "max_steps": 8},
    "adversarial_gradient_integration": {"n_classes": 2, "max_iter": 2},
    "adaptive_noising": {
        "max_iterations": 2,
        "score_kwargs": {"kernel_size": 3, "n_regions": 2},
    },
    "smooth_taylor": {"stdev_spread": 0.1},
    "smoothgrad": {"stdev_spread": 0.1},
    "smoothgrad_sq": {"stdev_spread": 0.1},
    "vargrad": {"stdev_spread": 0.1},
}


def settings(name: str) -> dict:
    return {**registry.count_kwargs(name, 3), **CHEAP.get(name, {})}


@functools.cache
def explain(name: str):
    """`explain(model_fn, x, target, key, *args)` of `name` with cheap settings."""
    e = registry.METHODS[name]
    return registry.explainer(
        e,
        baseline="black" if e.baseline else None,
        model=MODEL if e.input == "model" else None,
        **settings(name),
    )


def extra(name: str) -> tuple:
    return (REFS,) if registry.METHODS[name].references else ()


@functools.cache
def jitted(name: str):
    return jax.jit(explain(name))


def run(name, x=XS[0], target=TARGETS[0], key=KEY):
    return jitted(name)(MODEL.fn, x, target, key, *extra(name))


def expected_shape(name, x):
    return x.shape[:-1] if registry.METHODS[name].input == "model" else x.shape


# ------------------------------------------------------------------- the table itself
def test_the_registry_covers_every_public_method():
    helpers = {"NT_TYPES", "count_guided", "guided", "noise_tunnel"}
    helpers |= {"LAYER_METHODS", *jaxattr.methods.LAYER_METHODS}  # need a layer
    functions = {e.function for e in registry.METHODS.values()}
    assert set(jaxattr.methods.__all__) - helpers <= functions
    assert {e.name for e in registry.METHODS.values() if e.function == "noise_tunnel"}
    assert set(jaxattr.NT_TYPES) <= set(registry.METHODS)


@pytest.mark.parametrize("name", NAMES)
def test_an_entry_describes_its_function(name):
    e = registry.METHODS[name]
    assert e.input in registry.INPUTS and e.name == name and e.title
    params = inspect.signature(getattr(jaxattr, e.function)).parameters
    for kw in (*e.static, *e.steps, *e.fixed):
        assert kw in params, (name, kw)
    assert "key" in params
    if e.baseline:
        assert "baseline" in params
    if e.references:
        assert "references" in params
    if e.default_steps is not None:
        assert e.steps, name


def test_get_names_and_aliases():
    assert registry.get("saliency") is registry.METHODS["saliency"]
    with pytest.warns(DeprecationWarning, match="'full_gradients'"):
        assert registry.get("fullgrad").name == "full_gradients"
    with pytest.raises(ValueError, match="method: expected one of .*got 'ig'"):
        registry.get("ig")


# ----------------------------------------------------------------- every method runs
@pytest.mark.parametrize("name", NAMES)
def test_jit_same_key_twice_and_another_key(name):
    e = registry.METHODS[name]
    a = run(name)
    assert a.attributions.shape == expected_shape(name, XS[0])
    assert a.attributions.dtype == jnp.float32
    assert np.isfinite(np.asarray(a.attributions)).all()
    b = run(name)
    np.testing.assert_array_equal(a.attributions, b.attributions)
    other = run(name, key=jax.random.key(7))
    same = np.array_equal(np.asarray(a.attributions), np.asarray(other.attributions))
    assert same != e.key, f"{name}: key={e.key} but another key gave same={same}"


#: Methods whose path follows a ranking of the gradient's entries: under `vmap`, float32
#: rounding a few ulps apart can swap two nearly tied entries and so change the path
#: (seen on an AVX2 CPU: Guided IG, 15 of 192 values 5 % apart), so they are compared
#: in float64, where the ranking is the same.
RANKED = {"guided_integrated_gradients"}


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_images_and_targets_equals_a_loop(name):
    axes = (None, 0, 0, None) + (None,) * len(extra(name))
    with jax.enable_x64(name in RANKED):
        dtype = jnp.float64 if name in RANKED else jnp.float32
        xs, ex = XS.astype(dtype), tuple(a.astype(dtype) for a in extra(name))
        batched = jax.jit(jax.vmap(explain(name), in_axes=axes))(
            MODEL.fn, xs, TARGETS, KEY, *ex
        )
        one = jax.jit(explain(name)) if name in RANKED else jitted(name)
        for i in range(len(XS)):
            single = one(MODEL.fn, xs[i], TARGETS[i], KEY, *ex)
            np.testing.assert_allclose(
                batched.attributions[i], single.attributions, rtol=1e-4, atol=1e-6
            )


@pytest.mark.parametrize("name", NAMES)
def test_float64(name):
    with jax.enable_x64(True):
        x = XS[0].astype(jnp.float64)
        ex = extra(name)
        ex = tuple(a.astype(jnp.float64) for a in ex)
        out = jax.jit(explain(name))(MODEL.fn, x, TARGETS[0], KEY, *ex)
        assert out.attributions.dtype == jnp.float64, out.attributions.dtype
        assert out.attributions.shape == expected_shape(name, x)
        assert np.isfinite(np.asarray(out.attributions)).all()


W = jax.random.normal(jax.random.key(3), (8 * 8 * 3, 5))


def linear_model(z):
    """`[N, 8, 8, 3] -> [N, 5]`: every path method is exact on it."""
    return z.reshape(z.shape[0], -1) @ W


@pytest.mark.parametrize("name", [n for n in NAMES if registry.METHODS[n].completeness])
def test_completeness_where_the_registry_says_it_holds(name):
    """`delta = sum(A) - (f(x) - f(baseline))`, exactly 0 on a linear model for the
    path methods with straight paths; Blur IG's blurring path is curved, so its
    quadrature error only shrinks with more steps."""
    out = jax.jit(functools.partial(explain(name), linear_model))(
        XS[0], TARGETS[0], KEY, *extra(name)
    )
    gap = float(out.aux["f_x"] - jnp.mean(out.aux["f_baseline"]))
    total = float(jnp.sum(out.attributions))
    np.testing.assert_allclose(float(out.delta), total - gap, rtol=1e-3, atol=1e-3)
    if name != "blur_integrated_gradients":
        assert abs(float(out.delta)) <= 1e-4 * max(1.0, abs(gap)), (name, out.delta)
        return
    finer = registry.explainer(name, **registry.count_kwargs(name, 48))
    fine = jax.jit(functools.partial(finer, linear_model))(XS[0], TARGETS[0], KEY)
    assert abs(float(fine.delta)) < abs(float(out.delta)) / 4, (fine.delta, out.delta)


# --------------------------------------------------------------------- bad inputs
def bad_inputs(name):
    """(what, x, key, args, error type, message regex) cases for `name`."""
    e = registry.METHODS[name]
    x = XS[0]
    cases = [
        ("nan", x.at[0, 0, 0].set(jnp.nan), KEY, extra(name), ValueError, "NaN|finite"),
        ("integer", (x * 255).astype(jnp.int32), KEY, extra(name), TypeError, "float"),
        ("a batch", XS, KEY, extra(name), (ValueError, TypeError), "."),
    ]
    if e.key:
        cases.append(("no key", x, None, extra(name), ValueError, "key is required"))
    if e.references:
        cases.append(("references", x, KEY, (REFS[:, :4],), ValueError, "references"))
    return cases


@pytest.mark.parametrize("name", NAMES)
def test_each_bad_input_is_a_clear_error(name):
    for what, x, key, args, error, match in bad_inputs(name):
        with pytest.raises(error, match=match):
            explain(name)(MODEL.fn, x, TARGETS[0], key, *args)
            pytest.fail(f"{name}: {what} raised nothing")


@pytest.mark.parametrize("name", [n for n in NAMES if registry.METHODS[n].baseline])
def test_a_baseline_of_the_wrong_shape(name):
    ex = registry.explainer(
        name, baseline=jnp.zeros((4, 4, 3)), model=None, **settings(name)
    )
    with pytest.raises(ValueError, match="baseline"):
        ex(MODEL.fn, XS[0], TARGETS[0], KEY)


def test_explainer_refuses_what_a_method_does_not_take():
    with pytest.raises(ValueError, match="output: full_gradients defines its own"):
        registry.explainer("full_gradients", output="softmax", model=MODEL)
    with pytest.raises(ValueError, match="baseline: saliency takes no baseline"):
        registry.explainer("saliency", baseline="black")
    with pytest.raises(ValueError, match="model: full_gradients needs"):
        registry.explainer("full_gradients")
