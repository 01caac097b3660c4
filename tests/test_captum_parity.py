"""Cross-checks against Captum on the same small CNN with identical weights.

Skipped with a reason when torch or captum is missing (`.ci/run` installs both).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from tests import helpers

torch = pytest.importorskip(
    "torch", reason="torch is not installed (pip install torch==2.13.0)"
)
captum_attr = pytest.importorskip("captum.attr", reason="captum is not installed")

PARAMS = helpers.tiny_cnn_params(seed=3)
JAX_MODEL = helpers.tiny_cnn(PARAMS)
TORCH_MODEL = helpers.torch_tiny_cnn(PARAMS)
X = np.asarray(jax.random.uniform(jax.random.key(0), (2, 12, 12, 3)))
BASE = np.asarray(jax.random.uniform(jax.random.key(1), (2, 12, 12, 3))) * 0.3
TARGETS = [3, 7]

# Captum's rule names -> ours (Captum's trapezoid is our captum_trapezoid,
# docs/integrated_gradients.md#quadrature-rules).
RULES = {
    "riemann_left": "riemann_left",
    "riemann_right": "riemann_right",
    "riemann_middle": "riemann_middle",
    "riemann_trapezoid": "captum_trapezoid",
    "gausslegendre": "gausslegendre",
}


def to_torch(a):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2))))


def from_torch(t):
    return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


def rel_err(a, b):
    return float(
        np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()
    )


def test_models_agree():
    with torch.no_grad():
        ref = TORCH_MODEL(to_torch(X)).numpy()
    np.testing.assert_allclose(JAX_MODEL(jnp.asarray(X)), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("captum_rule", RULES)
def test_integrated_gradients_every_rule(captum_rule):
    ig = captum_attr.IntegratedGradients(TORCH_MODEL)
    ref, ref_delta = ig.attribute(
        to_torch(X),
        baselines=to_torch(BASE),
        target=TARGETS,
        n_steps=24,
        method=captum_rule,
        internal_batch_size=10,
        return_convergence_delta=True,
    )
    ours = jaxattr.attribute(
        jaxattr.integrated_gradients,
        JAX_MODEL,
        jnp.asarray(X),
        jnp.array(TARGETS),
        baseline=jnp.asarray(BASE),
        n_steps=24,
        rule=RULES[captum_rule],
        batch_size=5,
    )
    assert rel_err(ours.attributions, from_torch(ref)) < 1e-4
    np.testing.assert_allclose(ours.delta, ref_delta.numpy(), atol=1e-4)


def test_saliency_and_input_x_gradient():
    x = to_torch(X).requires_grad_()
    sal = captum_attr.Saliency(TORCH_MODEL).attribute(x, target=TARGETS)
    ixg = captum_attr.InputXGradient(TORCH_MODEL).attribute(x, target=TARGETS)
    ours_sal = jaxattr.attribute(
        jaxattr.saliency, JAX_MODEL, jnp.asarray(X), jnp.array(TARGETS)
    )
    ours_ixg = jaxattr.attribute(
        jaxattr.input_x_gradient, JAX_MODEL, jnp.asarray(X), jnp.array(TARGETS)
    )
    assert rel_err(ours_sal.attributions, from_torch(sal)) < 1e-4
    assert rel_err(ours_ixg.attributions, from_torch(ixg)) < 1e-4


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_with_a_fixed_noise_tensor(nt_type, monkeypatch):
    nt_samples, stdev = 4, 0.1
    x = X[:1]
    eps = np.asarray(jax.random.normal(jax.random.key(2), (nt_samples, *x.shape[1:])))

    # Captum draws torch.normal(0, stdev_expanded) of shape [N * nt_samples, C, H, W]
    # and adds it to the input repeated with repeat_interleave; hand it our draws.
    def fixed_normal(mean, std, *args, **kwargs):
        assert tuple(std.shape) == (nt_samples, *to_torch(x).shape[1:])
        return std * to_torch(eps)

    monkeypatch.setattr(torch, "normal", fixed_normal)
    nt = captum_attr.NoiseTunnel(captum_attr.IntegratedGradients(TORCH_MODEL))
    ref = nt.attribute(
        to_torch(x),
        nt_type=nt_type,
        nt_samples=nt_samples,
        stdevs=stdev,
        target=TARGETS[0],
        n_steps=16,
    )
    f = jaxattr.scalar_output(JAX_MODEL, TARGETS[0])
    ours = jaxattr.noise_tunnel(
        jaxattr.integrated_gradients,
        f,
        jnp.asarray(x[0]),
        noise=jnp.asarray(eps),
        nt_type=nt_type,
        nt_samples=nt_samples,
        stdevs=stdev,
        n_steps=16,
    )
    assert rel_err(ours.attributions, from_torch(ref)[0]) < 1e-4


@pytest.mark.parametrize("stdevs", [0.0, 0.05])
def test_expected_gradients_is_gradient_shap(stdevs, monkeypatch):
    """Same references, alphas and noise: Captum draws the reference indices with
    np.random.choice, then the alphas with np.random.uniform, and the noise with
    torch.normal; we replay those draws into jaxattr."""
    n_samples, x = 6, X[:1]
    refs = np.asarray(jax.random.uniform(jax.random.key(5), (4, *x.shape[1:])))
    eps = np.asarray(jax.random.normal(jax.random.key(6), (n_samples, *x.shape[1:])))
    np.random.seed(11)
    indices = np.random.choice(refs.shape[0], n_samples)
    alphas = np.random.uniform(0.0, 1.0, n_samples)
    assert len(set(indices.tolist())) > 1  # several references are exercised

    def fixed_normal(mean, std, *args, **kwargs):
        return std * to_torch(eps)

    monkeypatch.setattr(torch, "normal", fixed_normal)
    np.random.seed(11)
    ref = captum_attr.GradientShap(TORCH_MODEL).attribute(
        to_torch(x),
        baselines=to_torch(refs),
        target=TARGETS[0],
        n_samples=n_samples,
        stdevs=stdevs,
    )
    f = jaxattr.scalar_output(JAX_MODEL, TARGETS[0])
    ours = jaxattr.expected_gradients(
        f,
        jnp.asarray(x[0]),
        jnp.asarray(refs),
        n_samples=n_samples,
        stdevs=stdevs,
        indices=jnp.asarray(indices),
        alphas=jnp.asarray(alphas, jnp.float32),
        noise=jnp.asarray(eps),
        batch_size=4,
    )
    assert rel_err(ours.attributions, from_torch(ref)[0]) < 1e-4
