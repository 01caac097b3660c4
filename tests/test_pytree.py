"""Pytree inputs (`jaxattr.pytrees`): a tuple or dict `x`, baselines of its structure,
attributions of its structure, completeness over all leaves.

The references are closed forms computed by hand, and the same method on the
concatenated flat vector (`f(unravel(v))`): a method on a pytree must equal the method
on the vector of its leaves. Tiny inputs (two leaves, ten entries), few steps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxattr
from jaxattr import metrics, registry

W = jnp.array([1.0, -2.0, 0.5])
A = jnp.array([0.3, 0.6, 0.9])
B = jnp.array([0.2, -0.4])


def f_ab(x):
    """`f(a, b) = <w, a> sum(b) + sum(b^2)`."""
    a, b = x
    return jnp.dot(W, a) * jnp.sum(b) + jnp.sum(b**2)


def ig_closed_form(a, b):
    """IG from 0 of `f_ab`: the bilinear term splits in halves, `b^2` gives `b^2`."""
    return W * a * jnp.sum(b) / 2, b * jnp.dot(W, a) / 2 + b**2


def close(tree, ref, **tol):
    tol = {"rtol": 1e-5, "atol": 1e-6, **tol}
    assert jax.tree.structure(tree) == jax.tree.structure(ref)
    for got, want in zip(jax.tree.leaves(tree), jax.tree.leaves(ref)):
        np.testing.assert_allclose(got, want, **tol)


# ------------------------------------------------------------- IG on f(a, b)
def test_ig_closed_form_per_leaf():
    r = jaxattr.integrated_gradients(f_ab, (A, B), n_steps=4)
    assert isinstance(r.attributions, tuple)
    close(r.attributions, ig_closed_form(A, B))  # Gauss-Legendre: exact on cubics
    assert abs(float(r.delta)) < 1e-5
    np.testing.assert_allclose(r.aux["f_x"], f_ab((A, B)), rtol=1e-6)


def test_completeness_sums_over_all_leaves():
    base = (jnp.array([0.1, 0.0, -0.3]), jnp.array([1.0, 0.5]))
    r = jaxattr.integrated_gradients(f_ab, (A, B), base, n_steps=4)
    total = sum(float(jnp.sum(v)) for v in r.attributions)
    gap = float(f_ab((A, B)) - f_ab(base))
    np.testing.assert_allclose(total, gap, rtol=1e-5)
    np.testing.assert_allclose(float(r.delta), total - gap, atol=1e-5)
    m = metrics.completeness(f_ab, (A, B), r.attributions, base)
    assert bool(m.passed) and abs(float(m.delta)) < 1e-5


def test_a_dict_input_equals_the_method_on_the_flat_vector():
    x = {"image": jax.random.uniform(jax.random.key(0), (2, 2, 1)), "meta": B}
    flat, unravel = ravel_pytree(x)
    v = jax.random.normal(jax.random.key(1), flat.shape)

    def f(z):
        return jnp.tanh(jnp.dot(v, ravel_pytree(z)[0])) + z["meta"][0] ** 3

    r = jaxattr.integrated_gradients(f, x, 0.2, n_steps=16)
    ref = jaxattr.integrated_gradients(lambda u: f(unravel(u)), flat, 0.2, n_steps=16)
    assert set(r.attributions) == {"image", "meta"}
    close(r.attributions, unravel(ref.attributions))
    np.testing.assert_allclose(r.delta, ref.delta, atol=1e-6)


# ----------------------------------------------------------------------- baselines
def test_baseline_as_a_pytree_a_name_and_a_scalar():
    x = (A, B)
    ig = functools.partial(jaxattr.integrated_gradients, f_ab, x, n_steps=4)
    zeros = ig((jnp.zeros(3), jnp.zeros(2)))
    for same in (None, "black", "zeros", 0.0, ("black", 0.0), (None, jnp.zeros(2))):
        close(ig(same).attributions, zeros.attributions)
    half = ig(0.5)  # a scalar for every leaf
    halves = (jnp.full(3, 0.5), jnp.full(2, 0.5))
    close(half.attributions, ig(halves).attributions)
    np.testing.assert_allclose(half.aux["f_baseline"], [f_ab(halves)], rtol=1e-6)
    # a callable x -> pytree, and several baselines (a list): their mean
    close(
        ig(lambda z: jax.tree.map(jnp.zeros_like, z)).attributions, zeros.attributions
    )
    both = ig([0.0, 0.5])
    mean = jax.tree.map(lambda p, q: (p + q) / 2, zeros.attributions, half.attributions)
    close(both.attributions, mean)


def test_a_random_named_baseline_needs_a_key_and_is_drawn_per_leaf():
    with pytest.raises(ValueError, match="key is required"):
        jaxattr.integrated_gradients(f_ab, (A, B), "uniform", n_steps=2)
    r = jaxattr.integrated_gradients(
        f_ab, (A, B), "uniform", n_steps=4, key=jax.random.key(0)
    )
    again = jaxattr.integrated_gradients(
        f_ab, (A, B), "uniform", n_steps=4, key=jax.random.key(0)
    )
    close(r.attributions, again.attributions)
    assert abs(float(r.delta)) < 1e-5


@pytest.mark.parametrize(
    "baseline, error, match",
    [
        ({"a": 0.0}, ValueError, r"baseline must be a pytree with the structure of x"),
        ((0.0, (1.0, 2.0)), ValueError, r"baseline must be a pytree.*a list"),
        ([0.0, (1.0, 2.0, 3.0)], ValueError, r"baseline\[1\] must be a pytree"),
        ((jnp.zeros(3), jnp.zeros(3)), ValueError, r"baseline for x\[1\].*broadcast"),
        ((jnp.zeros(3), "purple"), ValueError, r"baseline for x\[1\].*name"),
    ],
)
def test_a_baseline_of_the_wrong_structure_is_a_clear_error(baseline, error, match):
    with pytest.raises(error, match=match):
        jaxattr.integrated_gradients(f_ab, (A, B), baseline, n_steps=2)


def test_a_dict_baseline_with_other_keys_names_both_structures():
    x = {"a": A, "b": B}
    with pytest.raises(ValueError, match=r"baseline must .* structure of x.*'a'.*'c'"):
        jaxattr.integrated_gradients(
            lambda z: f_ab((z["a"], z["b"])), x, {"a": 0.0, "c": 0.0}
        )


# -------------------------------------------------------------------- input checks
def test_integer_leaves_are_refused_with_the_embedding_hint():
    with pytest.raises(TypeError, match=r"x\['ids'\] has int32.*embeddings"):
        jaxattr.saliency(lambda z: z["e"].sum(), {"ids": jnp.arange(3), "e": A})
    with pytest.raises(ValueError, match=r"x\[1\] must be finite"):
        jaxattr.saliency(f_ab, (A, B.at[0].set(jnp.nan)))


def test_mixed_dtypes_give_each_leaf_its_own_dtype():
    x = (A.astype(jnp.float16), B)
    r = jaxattr.integrated_gradients(f_ab, x, n_steps=4)
    assert [v.dtype for v in r.attributions] == [jnp.float16, jnp.float32]
    close(r.attributions, ig_closed_form(x[0].astype(jnp.float32), B), rtol=2e-3)


def test_jit_vmap_and_attribute_over_a_pytree_batch():
    xs = (jnp.stack([A, 2 * A]), jnp.stack([B, -B]))
    ig = functools.partial(jaxattr.integrated_gradients, f_ab, n_steps=4)
    batched = jax.jit(jax.vmap(lambda x: ig(x).attributions))(xs)
    for i in range(2):
        one = ig((xs[0][i], xs[1][i])).attributions
        close(jax.tree.map(lambda v, i=i: v[i], batched), one)

    def model_fn(batch):  # [N, 3], [N, 2] -> [N, 2]
        a, b = batch
        return jnp.stack([jax.vmap(f_ab)((a, b)), a.sum(-1)], axis=-1)

    out = jaxattr.attribute(
        jaxattr.integrated_gradients, model_fn, xs, 0, baseline=0.0, n_steps=4
    )
    close(out.attributions, batched)
    per_example = jax.tree.map(lambda v: 0.1 * v, xs)  # one baseline per example
    out = jaxattr.attribute(
        jaxattr.integrated_gradients, model_fn, xs, 0, baseline=per_example, n_steps=4
    )
    ref = ig((xs[0][1], xs[1][1]), (0.1 * xs[0][1], 0.1 * xs[1][1]))
    close(jax.tree.map(lambda v: v[1], out.attributions), ref.attributions)


# ------------------------------------------------------- every method of the registry
W1 = jax.random.normal(jax.random.key(1), (6, 5))
W2 = jax.random.normal(jax.random.key(2), (4, 5))
X = {
    "image": jax.random.uniform(jax.random.key(3), (2, 3)),
    "meta": jax.random.uniform(jax.random.key(4), (4,)),
}
FLAT, UNRAVEL = ravel_pytree(X)
REFS = {
    "image": jax.random.uniform(jax.random.key(5), (3, 2, 3)),
    "meta": jax.random.uniform(jax.random.key(6), (3, 4)),
}
FLAT_REFS = jax.vmap(lambda r: ravel_pytree(r)[0])(REFS)
KEY = jax.random.key(7)


def model_fn(batch):
    """A dict batch `{"image": [N, 2, 3], "meta": [N, 4]}` -> `[N, 5]` (ReLU)."""
    img, meta = batch["image"], batch["meta"]
    return jax.nn.relu(img.reshape(img.shape[0], -1) @ W1 + meta @ W2)


def flat_model_fn(v):
    """The same model on the concatenated vectors `[N, 10]`."""
    return model_fn(jax.vmap(UNRAVEL)(v))


def score(f, x, attributions, key):  # adaptive noising's objective, any structure
    return sum(jnp.abs(v).sum() for v in jax.tree.leaves(attributions))


CHEAP = {
    "adaptive_integrated_gradients": {"initial_intervals": 2, "max_steps": 8},
    "adversarial_gradient_integration": {"n_classes": 2, "max_iter": 2},
    "adaptive_noising": {"max_iterations": 2, "score_fn": score},
}
#: Refused, with the reason in the message.
IMAGE_ONLY = {
    "blur_integrated_gradients": "blurs an image",
    "full_gradients": "bias gradients of an image model",
}
#: Noise per leaf: the flat reference gets the per-leaf levels as a vector.
SPREAD = {"smoothgrad": 0.15, "smoothgrad_sq": 0.15, "vargrad": 0.15}
SPREAD["smooth_taylor"] = 0.1


def per_leaf_stdevs(spread):
    return ravel_pytree(
        jax.tree.map(lambda v: jnp.full(v.shape, spread * (v.max() - v.min())), X)
    )[0]


def run(name, fn, x, refs, **extra):
    e = registry.METHODS[name]
    kwargs = {**registry.count_kwargs(name, 3), **CHEAP.get(name, {}), **extra}
    explain = registry.explainer(
        e,
        baseline="black" if e.baseline else None,
        model=object() if e.input == "model" else None,
        **kwargs,
    )
    args = (refs,) if e.references else ()
    return jax.jit(lambda z, k, *a: explain(fn, z, 1, k, *a))(x, KEY, *args)


@pytest.mark.parametrize("name", tuple(registry.METHODS))
def test_every_registry_method_on_a_two_leaf_input(name):
    if name in IMAGE_ONLY:
        with pytest.raises(TypeError, match=rf"{name}: x must be one array"):
            run(name, model_fn, X, REFS)
        with pytest.raises(TypeError, match=IMAGE_ONLY[name]):
            run(name, model_fn, X, REFS)
        return
    r = run(name, model_fn, X, REFS)
    assert jax.tree.structure(r.attributions) == jax.tree.structure(X)
    assert all(
        np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(r.attributions)
    )
    extra = {}
    if name in SPREAD:
        extra = {"stdevs": per_leaf_stdevs(SPREAD[name])}
    ref = run(name, flat_model_fn, FLAT, FLAT_REFS, **extra)
    close(r.attributions, UNRAVEL(ref.attributions), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.delta, ref.delta, rtol=1e-4, atol=1e-5)


def test_noise_levels_are_per_leaf():
    x = (A, 100 * B)  # leaves in very different units
    r = jaxattr.noise_tunnel(jaxattr.saliency, f_ab, x, key=KEY, stdev_spread=0.2)
    close(r.aux["sigma"], (0.2 * (A.max() - A.min()), 0.2 * 100 * (B.max() - B.min())))
    s = jaxattr.smooth_taylor(f_ab, x, key=KEY, n_roots=4, stdevs=(0.1, 2.0))
    close(s.aux["sigma"], (0.1, 2.0))
    # the baseline of the inner method is given as a pytree
    ig = jaxattr.noise_tunnel(
        jaxattr.integrated_gradients, f_ab, x, (0.0, 0.0), key=KEY, n_steps=4
    )
    assert np.all(np.abs(np.asarray(ig.delta)) < 1e-3)


def test_image_specific_options_are_refused():
    x = (A, B)
    with pytest.raises(TypeError, match="mask_features='pixels'"):
        jaxattr.distilled_gradient_aggregation(f_ab, x, mask_features="pixels")
    with pytest.raises(TypeError, match="score_fn='aupc'.*callable"):
        jaxattr.adaptive_noising(f_ab, x, key=KEY)
    with pytest.raises(TypeError, match="normalisation"):
        jaxattr.smooth_taylor(f_ab, x, key=KEY, normalisation=(0.5, 0.2))


def test_layer_ig_with_a_pytree_input():
    def head(x):
        return jnp.tanh(x[0][:2] * x[1])

    r = jaxattr.layer_integrated_gradients(head, lambda h: (h**2).sum(), (A, B), 0.0)
    assert r.attributions.shape == (2,)
    assert abs(float(r.delta)) < 1e-4
    n = jaxattr.neuron_integrated_gradients(head, 1, (A, B), 0.0)
    assert jax.tree.structure(n.attributions) == jax.tree.structure((A, B))


# ------------------------------------------------------------------------ metrics
def flat_f(v):
    return f_ab(ravel_pytree((A, B))[1](v))


def test_pytree_metrics_equal_the_metric_on_the_flat_vector():
    x = (A, B)
    v = jnp.concatenate([A, B])
    attr = jaxattr.integrated_gradients(f_ab, x, n_steps=4).attributions
    a = jnp.concatenate(attr)
    got = metrics.completeness(f_ab, x, attr, 0.1)
    want = metrics.completeness(flat_f, v, a, 0.1)
    close(tuple(got), tuple(want))
    np.testing.assert_allclose(metrics.complexity(attr), metrics.complexity(a))
    np.testing.assert_allclose(metrics.sparseness(attr), metrics.sparseness(a))

    got = metrics.infidelity(f_ab, x, attr, key=KEY, n_perturb_samples=4)
    want = metrics.infidelity(flat_f, v, a, key=KEY, n_perturb_samples=4)
    close(tuple(got), tuple(want))

    def perturb(key, z):  # Captum's contract: (I, x - I), here on pytrees
        i = jax.tree.map(lambda u: 0.1 * jax.random.normal(key, u.shape), z)
        return i, jax.tree.map(jnp.subtract, z, i)

    def perturb_flat(key, z):
        i = jnp.concatenate([0.1 * jax.random.normal(key, u.shape) for u in (A, B)])
        return i, z - i

    got = metrics.infidelity(f_ab, x, attr, key=KEY, perturb_func=perturb)
    want = metrics.infidelity(flat_f, v, a, key=KEY, perturb_func=perturb_flat)
    close(tuple(got), tuple(want))

    # sensitivity-n: the features are the entries of all leaves, each a "pixel"
    got = metrics.sensitivity_n(f_ab, x, attr, n=2, key=KEY, n_subsets=8)
    want = metrics.sensitivity_n(
        lambda img: flat_f(img.reshape(-1)),
        v[:, None, None],
        a[:, None, None],
        n=2,
        key=KEY,
        n_subsets=8,
    )
    close(tuple(got), tuple(want))

    got = metrics.sensitivity_max(jaxattr.saliency, f_ab, x, key=KEY)
    want = metrics.sensitivity_max(jaxattr.saliency, flat_f, v, key=KEY)
    close(tuple(got), tuple(want))


def test_image_metrics_options_are_refused_for_pytrees():
    x, attr = (A, B), (A, B)
    with pytest.raises(TypeError, match="perturb_func='square'"):
        metrics.infidelity(f_ab, x, attr, key=KEY, perturb_func="square")
    with pytest.raises(TypeError, match="rise_blur"):
        metrics.sensitivity_n(f_ab, x, attr, n=1, key=KEY, perturb_baseline="rise_blur")
    with pytest.raises(TypeError, match="reduction"):
        metrics.complexity(attr, reduction="sum")
    with pytest.raises(ValueError, match=r"attributions must be a pytree"):
        metrics.completeness(f_ab, x, A)


# ---------------------------------------------------------------------- the docs
def test_the_docs_example_runs():
    from tests.test_docs_examples import blocks

    section = [
        b
        for b in blocks("integrated_gradients.md")
        if "pytree" in b.code.lower() and not b.skip
    ]
    assert section, "docs/integrated_gradients.md#pytree-inputs has no example"
    namespace: dict = {}
    for b in section:
        exec(compile(b.code, "integrated_gradients.md", "exec"), namespace)  # noqa: S102
