"""Small models and analytic functions with known attributions, shared by tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def tiny_cnn_params(seed: int = 0, channels: int = 3, classes: int = 10) -> dict:
    """Weights of a small ReLU CNN: conv3x3(8) - relu - conv3x3(8, s2) - relu - mean - dense.

    NumPy float32 arrays in PyTorch layouts (OIHW, [out, in]) so the same weights build
    the JAX model here and the torch model in the Captum cross-checks.
    """
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(0, 0.4, (8, channels, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, (8,)).astype(np.float32),
        "w2": rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32),
        "b2": rng.normal(0, 0.1, (8,)).astype(np.float32),
        "w3": rng.normal(0, 0.5, (classes, 8)).astype(np.float32),
        "b3": rng.normal(0, 0.1, (classes,)).astype(np.float32),
    }


def tiny_cnn(params: dict, act=jax.nn.relu):
    """Batched JAX model `[N, H, W, C] -> [N, classes]` from `tiny_cnn_params`."""

    def conv(x, w, b, stride):
        y = jax.lax.conv_general_dilated(
            x,
            jnp.transpose(jnp.asarray(w), (2, 3, 1, 0)),  # OIHW -> HWIO
            (stride, stride),
            [(1, 1), (1, 1)],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        return y + b

    def model(x):
        h = act(conv(x, params["w1"], params["b1"], 1))
        h = act(conv(h, params["w2"], params["b2"], 2))
        h = h.mean(axis=(1, 2))
        return h @ jnp.asarray(params["w3"]).T + params["b3"]

    return model


def torch_tiny_cnn(params: dict):
    """The same model in PyTorch, NCHW."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            c = params["w1"].shape[1]
            self.c1 = torch.nn.Conv2d(c, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(8, params["w3"].shape[0])
            with torch.no_grad():
                for m, w, b in (
                    (self.c1, "w1", "b1"),
                    (self.c2, "w2", "b2"),
                    (self.fc, "w3", "b3"),
                ):
                    m.weight.copy_(torch.from_numpy(params[w]))
                    m.bias.copy_(torch.from_numpy(params[b]))

        def forward(self, x):
            h = torch.relu(self.c1(x))
            h = torch.relu(self.c2(h))
            return self.fc(h.mean(dim=(2, 3)))

    return Net().eval()


def ig_paper_toy(x):
    """Captum's/IG paper's toy: relu(relu(x1) - 1 - relu(x2)); IG at (3, 1) from 0 is (1.5, -0.5)."""
    return jax.nn.relu(jax.nn.relu(x[0]) - 1.0 - jax.nn.relu(x[1]))


def random_bn_variables(
    module,
    size: int,
    seed: int = 0,
    var: tuple[float, float] = (0.5, 1.5),
    scale: tuple[float, float] = (0.4, 0.8),
    bias_std: float = 0.1,
) -> dict:
    """Random ``{'params', 'batch_stats'}`` of a Flax image ``module`` traced at
    ``[1, size, size, 3]``: He-normal kernels, BatchNorm variances and scales uniform
    in ``var`` and ``scale`` (non-identity), other leaves (biases, shifts, means)
    normal with ``bias_std``; numpy's generator from ``seed``."""
    shapes = jax.eval_shape(
        module.init, jax.random.key(0), jnp.zeros((1, size, size, 3))
    )
    rng = np.random.default_rng(seed)

    def init(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            value = rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)
        elif name in ("var", "scale"):
            value = rng.uniform(*(var if name == "var" else scale), leaf.shape)
        else:
            value = bias_std * rng.standard_normal(leaf.shape)
        return jnp.asarray(value, jnp.float32)

    return {
        k: jax.tree_util.tree_map_with_path(init, v)
        for k, v in shapes.items()
        if k in ("params", "batch_stats")
    }
