"""Every bad input raises a clear error naming the argument and the received value."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr import baselines
from tests import helpers

F = lambda x: jnp.sum(x**2)
X = jnp.ones((4, 4, 3))


def test_baseline_shape_mismatch():
    with pytest.raises(
        ValueError,
        match=r"baseline must broadcast to x.shape \(4, 4, 3\); got shape \(1, 4, 4, 3\)",
    ):
        jaxattr.integrated_gradients(F, X, jnp.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"got shape \(5, 3\)"):
        jaxattr.integrated_gradients(F, X, np.zeros((5, 3)))


def test_integer_images():
    with pytest.raises(TypeError, match="x must have a floating dtype.*got uint8"):
        jaxattr.integrated_gradients(F, jnp.ones((4, 4, 3), jnp.uint8))
    with pytest.raises(TypeError, match="x must have a floating dtype.*got int32"):
        jaxattr.saliency(F, jnp.ones((4, 4, 3), jnp.int32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_input(bad):
    x = np.ones((4, 4, 3), np.float32)
    x[1, 2, 0] = bad
    for method in (
        jaxattr.integrated_gradients,
        jaxattr.saliency,
        jaxattr.input_x_gradient,
    ):
        with pytest.raises(ValueError, match="x must be finite; got 1 NaN or inf"):
            method(F, jnp.asarray(x))
    with pytest.raises(ValueError, match="baseline must be finite"):
        jaxattr.integrated_gradients(F, X, jnp.asarray(x))


def test_target_out_of_range():
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    x = jnp.ones((8, 8, 3))
    f = jaxattr.scalar_output(model, 10)
    with pytest.raises(
        ValueError,
        match=r"target must be in \[0, 10\) for a model with 10 outputs; got 10",
    ):
        jaxattr.integrated_gradients(f, x)
    with pytest.raises(ValueError, match=r"got -1"):
        jaxattr.saliency(jaxattr.scalar_output(model, -1), x)
    with pytest.raises(
        ValueError, match=r"target must be in \[0, 10\).*got values in \[0, 12\]"
    ):
        jaxattr.attribute(
            jaxattr.saliency, model, jnp.ones((2, 8, 8, 3)), jnp.array([0, 12])
        )
    with pytest.raises(
        TypeError,
        match="target must be None, an integer class index or a callable; got float",
    ):
        jaxattr.scalar_output(model, 2.0)


def test_traced_target_out_of_range_gives_nan_not_a_wrong_class():
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    x = jnp.ones((8, 8, 3))

    @jax.jit
    def explain(t):
        return jaxattr.integrated_gradients(
            jaxattr.scalar_output(model, t), x, n_steps=4
        )

    assert np.isnan(np.asarray(explain(10).attributions)).all()
    assert np.isfinite(np.asarray(explain(9).attributions)).all()


@pytest.mark.parametrize("n_steps", [0, -3])
def test_n_steps_below_one(n_steps):
    with pytest.raises(
        ValueError, match=f"integrated_gradients: n_steps must be >= 1.*got {n_steps}"
    ):
        jaxattr.integrated_gradients(F, X, n_steps=n_steps)


def test_n_steps_not_an_int():
    with pytest.raises(TypeError, match="n_steps must be a Python int.*got float 10.0"):
        jaxattr.integrated_gradients(F, X, n_steps=10.0)


def test_unknown_rule():
    with pytest.raises(
        ValueError, match="rule must be one of riemann_left.*got 'trapz'"
    ):
        jaxattr.integrated_gradients(F, X, rule="trapz")


def test_unknown_baseline_name_and_output():
    with pytest.raises(ValueError, match="baseline name must be one of.*got 'grey'"):
        jaxattr.integrated_gradients(F, X, "grey")
    with pytest.raises(ValueError, match="output must be one of.*got 'probs'"):
        jaxattr.scalar_output(lambda x: x, 0, output="probs")


def test_missing_key_for_stochastic_methods():
    with pytest.raises(
        ValueError, match=r"noise_tunnel: key is required \(the noise is random\)"
    ):
        jaxattr.noise_tunnel(jaxattr.saliency, F, X)
    with pytest.raises(
        ValueError,
        match=r"integrated_gradients: key is required \(a baseline is random\)",
    ):
        jaxattr.integrated_gradients(F, X, baselines.uniform())
    with pytest.raises(ValueError, match="key is required"):
        jaxattr.integrated_gradients(F, X, "uniform")
    with pytest.raises(TypeError, match="key must be a single JAX PRNG key"):
        jaxattr.noise_tunnel(jaxattr.saliency, F, X, key=0)


def test_non_scalar_f():
    with pytest.raises(
        ValueError, match=r"f must map one example to a scalar; got output \(4, 4, 3\)"
    ):
        jaxattr.integrated_gradients(lambda x: x * 2, X)
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    with pytest.raises(
        ValueError, match="target is None, so the model must have one output"
    ):
        jaxattr.saliency(jaxattr.scalar_output(model), jnp.ones((8, 8, 3)))


def test_callable_target_needs_x():
    with pytest.raises(ValueError, match="callable target .*needs x="):
        jaxattr.scalar_output(lambda x: x, jnp.argmax)


def test_attribute_callable_target_must_give_one_class_per_example():
    """`jnp.argmax` without an axis gives one flat index for the batch; under `jit`
    it used to be broadcast to every example and give NaN. Now: an error, traced or
    not, naming the shapes."""
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    xs = jnp.ones((3, 8, 8, 3))
    msg = r"attribute: a callable target must map the outputs \(3, 10\) .* \(3,\); got shape \(\)"
    for call in (
        lambda xs: jaxattr.attribute(jaxattr.saliency, model, xs, jnp.argmax),
        jax.jit(lambda xs: jaxattr.attribute(jaxattr.saliency, model, xs, jnp.argmax)),
    ):
        with pytest.raises(ValueError, match=msg):
            call(xs)
    r = jaxattr.attribute(jaxattr.saliency, model, xs, lambda z: jnp.argmax(z, -1))
    assert r.attributions.shape == xs.shape


def test_noise_tunnel_arguments():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="nt_type must be one of.*got 'smooth'"):
        jaxattr.noise_tunnel(jaxattr.saliency, F, X, key=key, nt_type="smooth")
    with pytest.raises(ValueError, match="not both"):
        jaxattr.noise_tunnel(
            jaxattr.saliency, F, X, key=key, stdevs=0.1, stdev_spread=0.1
        )
    with pytest.raises(ValueError, match="nt_samples must be >= 1; got 0"):
        jaxattr.noise_tunnel(jaxattr.saliency, F, X, key=key, nt_samples=0)
    with pytest.raises(
        ValueError, match=r"noise must have shape .*\(5, 4, 4, 3\); got \(4, 4, 3\)"
    ):
        jaxattr.noise_tunnel(jaxattr.saliency, F, X, noise=jnp.zeros((4, 4, 3)))


def test_batch_size_must_be_a_positive_int():
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        jaxattr.integrated_gradients(F, X, batch_size=0)


# ----------------------------------------------------------- habits users bring (Captum)


def test_batch_passed_to_a_one_example_method():
    """A batched model as f, or a batch as x: the message says the method takes one
    example and names jaxattr.attribute / jax.vmap."""
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    xs = jnp.ones((2, 8, 8, 3))
    with pytest.raises(
        ValueError,
        match=r"integrated_gradients: f must map one example to a scalar; got output"
        r" \(2, 10\) for x of shape \(2, 8, 8, 3\) \(the same leading axis: a batch\?\)"
        r".*integrated_gradients takes one example.*"
        r"jaxattr\.attribute\(jaxattr\.integrated_gradients, model_fn, inputs, target\)"
        r" or jax\.vmap",
    ):
        jaxattr.integrated_gradients(model, xs)
    # f built for one example, x a batch: the model's own error gets a note
    with pytest.raises(TypeError) as err:
        jaxattr.saliency(jaxattr.scalar_output(model, 3), xs)
    note = "\n".join(getattr(err.value, "__notes__", []))
    assert "saliency: evaluating f(x) failed for x of shape (2, 8, 8, 3)" in note
    assert "saliency takes one example" in note
    assert "jaxattr.attribute(jaxattr.saliency" in note
    # the same check in every method built on f
    for method in (
        jaxattr.smooth_taylor,
        jaxattr.guided_backprop,
        jaxattr.split_integrated_gradients,
    ):
        with pytest.raises(ValueError, match="takes one example"):
            method(model, xs, key=jax.random.key(0))


def test_attribute_given_one_example_without_a_batch_axis():
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    x = jnp.ones((8, 8, 3))
    with pytest.raises(TypeError) as err:
        jaxattr.attribute(jaxattr.saliency, model, x, 3)
    note = "\n".join(getattr(err.value, "__notes__", []))
    assert "attribute: model_fn failed on one example of inputs (8, 8, 3)" in note
    assert "For one example x, pass x[None]" in note
    # a model that runs on the wrong shape but gives no batch axis back
    flat = lambda z: z.reshape(-1)[:10]
    with pytest.raises(
        ValueError,
        match=r"attribute: model_fn must map a batch \[N, \.\.\.\] to outputs \[N, K\]"
        r" or \[N\]; given shape \(1, 8, 3\) it returned \(10,\)\..*x\[None\]",
    ):
        jaxattr.attribute(jaxattr.saliency, flat, x)
    # the right call works, and an output [N] (one per example) is a model too
    assert jaxattr.attribute(
        jaxattr.saliency, model, x[None], 3
    ).attributions.shape == (
        1,
        8,
        8,
        3,
    )
    one = jaxattr.attribute(jaxattr.saliency, lambda z: z.sum((1, 2, 3)), x[None])
    assert one.attributions.shape == (1, 8, 8, 3)


@pytest.mark.parametrize(
    "method, kwargs, hint",
    [
        (
            jaxattr.integrated_gradients,
            {"internal_batch_size": 8},
            r"jaxattr uses batch_size= \(Captum's internal_batch_size\)",
        ),
        (
            jaxattr.integrated_gradients,
            {"baselines": X},
            r"jaxattr uses baseline= \(Captum's baselines\)",
        ),
        (
            jaxattr.saliency,
            {"target": 3},
            r"jaxattr\.scalar_output\(model_fn, target\)",
        ),
        (
            jaxattr.integrated_gradients,
            {"return_convergence_delta": True},
            r"result\.delta",
        ),
        (
            jaxattr.integrated_gradients,
            {"additional_forward_args": (1,)},
            r"close over them in f",
        ),
        (jaxattr.blur_integrated_gradients, {"steps": 4}, r"jaxattr uses n_steps="),
        (jaxattr.integrated_gradients, {"nsteps": 4}, r"did you mean n_steps="),
        (
            jaxattr.expected_gradients,
            {"baselines": X},
            r"jaxattr uses references= \(Captum's baselines\)",
        ),
    ],
)
def test_captum_argument_names_get_a_hint(method, kwargs, hint):
    (name,) = kwargs
    args = (F, X, X[None]) if method is jaxattr.expected_gradients else (F, X)
    with pytest.raises(
        TypeError,
        match=rf"{method.__name__}\(\) got an unexpected keyword argument '{name}'; .*{hint}",
    ):
        method(*args, **kwargs)


def test_argument_hints_keep_signature_and_pass_through():
    import inspect
    import pickle
    import sys

    original = sys.modules["jaxattr.methods.integrated_gradients"].integrated_gradients
    assert original is not jaxattr.integrated_gradients
    assert inspect.signature(jaxattr.integrated_gradients) == inspect.signature(
        original
    )
    assert jaxattr.integrated_gradients.__doc__ == original.__doc__
    assert pickle.loads(pickle.dumps(jaxattr.saliency)) is jaxattr.saliency
    # a TypeError raised inside the method is not rewritten
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        jaxattr.integrated_gradients(F, jnp.ones((4, 4, 3), jnp.int32), batch_size=2)
    # through attribute (whose **method_kwargs reach the method) and for metrics
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    with pytest.raises(TypeError, match=r"jaxattr uses batch_size="):
        jaxattr.attribute(
            jaxattr.integrated_gradients,
            model,
            jnp.ones((1, 8, 8, 3)),
            0,
            internal_batch_size=2,
        )
    with pytest.raises(
        TypeError,
        match=r"deletion\(\) got an unexpected keyword argument"
        r" 'max_examples_per_batch'; jaxattr uses batch_size=",
    ):
        jaxattr.metrics.deletion(model, X, X, max_examples_per_batch=4)


def test_metric_given_a_scalar_function_instead_of_a_model():
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    x = jnp.ones((8, 8, 3)) * 0.5
    a = jnp.ones((8, 8, 3))
    msg = (
        r"deletion: model_fn must map images \[N, H, W, C\] to scores \[N, K\]; given"
        r" \(1, 8, 8, 3\) it returned shape \(\)\. deletion takes the model itself"
    )
    with pytest.raises(ValueError, match=msg):
        jaxattr.metrics.deletion(lambda z: jnp.sum(z**2), x, a, step=16)
    # f = scalar_output(model, t) puts a second batch axis on the batch: a note
    with pytest.raises(TypeError) as err:
        jaxattr.metrics.insertion(jaxattr.scalar_output(model, 3), x, a, step=16)
    note = "\n".join(getattr(err.value, "__notes__", []))
    assert "insertion takes the model itself, batched" in note
    assert "not a scalar function of one example" in note
    r = jaxattr.metrics.deletion(model, x, a, target=3, step=16)
    assert np.isfinite(float(r.score))


def test_pixels_in_0_255_warn_in_models_and_raise_in_image_helpers():
    from jaxattr import images, models

    model = models.load("cifar_resnet20", weights="random")
    x = np.full((1, 32, 32, 3), 0.5, np.float32)
    with pytest.warns(UserWarning, match=r"cifar_resnet20: x should hold float pixels in"
                      r" \[0, 1\]; got values in \[127.5, 127.5\].*divide by 255"):  # fmt: skip
        model.fn(x * 255)
    with pytest.warns(UserWarning, match=r"look like pixels normalised"):
        model.fn(np.full((1, 32, 32, 3), -2.0, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fn(x)  # in [0, 1]
        model.fn(x + 0.3)  # a little outside (noise): no warning
        jax.jit(model.fn)(x * 255)  # traced: not checked
    with pytest.raises(
        ValueError, match=r"x must be a batch .*\(one image: x\[None\]\)"
    ):
        model.fn(x[0])
    with pytest.raises(
        ValueError,
        match=r"float pixels must lie in \[0, 1\], got range \[0, 255\]; these look"
        r" like 0-255 pixels: divide by 255",
    ):
        images.preprocess(np.linspace(0, 255, 48 * 48 * 3).reshape(48, 48, 3), 32, 36)
