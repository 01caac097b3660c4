"""The table of attribution methods: what each needs, and one way to call it on a model.

`METHODS` maps a name to a `Method` entry: the jaxattr function it calls and what that
function needs (a PRNG key, a baseline, a background set, the logits or the whole model
instead of one scalar output), its static (shape-setting) keyword arguments and whether
completeness holds. The command line (`jaxattr explain`), the experiments and the tests
read this one table.

>>> explain = explainer("integrated_gradients", n_steps=32, baseline="black")
>>> result = jax.jit(explain)(model.fn, x, target, key)   # -> jaxattr.Attribution

`explainer` builds the runner's signature `explain(model_fn, x, target, key, *args)`
(`model_fn` batched `[N, H, W, 3] -> [N, K]`, `x` one image `[H, W, 3]`, `target` an
integer class, traced or not); the function is looked up in `jaxattr` when `explain`
is called, so it always calls the public (argument-checked) entry point.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

#: What a method explains: `"scalar"` a function `f(x) -> ()` (the chosen output of
#: the target class), `"logits"` the logits `[K]` of one example (AGI picks its own
#: classes), `"model"` the model's structure (FullGrad's bias gradients).
INPUTS = ("scalar", "logits", "model")


class Method(NamedTuple):
    """One entry of the registry.

    Attributes:
      name: the registry (and command-line) name; the same as in Python
        (`jaxattr.<name>`) except for the noise-tunnel variants `smoothgrad`,
        `smoothgrad_sq` and `vargrad` (`noise_tunnel(saliency, nt_type=name)`).
      function: the attribute of `jaxattr` that computes it.
      input: one of `INPUTS`.
      key: draws random numbers, so it needs a PRNG `key` (same key, same result).
      baseline: takes a baseline (the third positional argument).
      references: takes a background set `[R, *x.shape]` (the third positional argument).
      steps: keyword arguments that a step or sample count sets (static).
      default_steps: the command line's default for `steps` (None: the function's).
      static: keyword arguments that set shapes or branches: Python values, fixed
        when traced (`jit` recompiles for a new value).
      completeness: `sum(attributions) = f(x) - f(baseline)` up to the quadrature
        error, and `delta` reports the difference.
      fixed: keyword arguments this entry always passes (e.g. `nt_type`).
      title: a short human name (figures, help).
    """

    name: str
    function: str
    input: str = "scalar"
    key: bool = False
    baseline: bool = False
    references: bool = False
    steps: tuple[str, ...] = ()
    default_steps: int | None = None
    static: tuple[str, ...] = ()
    completeness: bool = False
    fixed: Mapping[str, Any] = MappingProxyType({})
    title: str = ""

    def resolve(self) -> Callable:
        """The function to call as `fn(f, x, *args, **kwargs)`, looked up now."""
        import jaxattr

        fn = getattr(jaxattr, self.function)
        if self.function == "noise_tunnel":
            fn = functools.partial(fn, jaxattr.saliency)
        return fn


_PATH = ("n_steps", "rule", "batch_size")
_NT = ("nt_type", "nt_samples", "nt_samples_batch_size")


def _nt(nt_type: str, title: str) -> Method:
    return Method(
        nt_type,
        "noise_tunnel",
        key=True,
        steps=("nt_samples",),
        default_steps=16,
        static=_NT,
        fixed=MappingProxyType({"nt_type": nt_type}),
        title=title,
    )


_ENTRIES = (
    Method(
        "integrated_gradients",
        "integrated_gradients",
        baseline=True,
        steps=("n_steps",),
        default_steps=64,
        static=_PATH,
        completeness=True,
        title="Integrated Gradients",
    ),
    Method(
        "adaptive_integrated_gradients",
        "adaptive_integrated_gradients",
        baseline=True,
        static=("initial_intervals", "split_per_round", "max_steps", "batch_size"),
        completeness=True,
        title="error-controlled Integrated Gradients",
    ),
    Method(
        "gnl_integrated_gradients",
        "gnl_integrated_gradients",
        baseline=True,
        steps=("n_steps",),
        default_steps=64,
        static=(*_PATH, "max_pool", "relu6"),
        title="GNL Integrated Gradients",
    ),
    Method(
        "split_integrated_gradients",
        "split_integrated_gradients",
        baseline=True,
        steps=("n_steps",),
        default_steps=64,
        static=(*_PATH, "side", "definition"),
        title="Split Integrated Gradients",
    ),
    Method(
        "integrated_decision_gradients",
        "integrated_decision_gradients",
        baseline=True,
        steps=("n_steps", "n_coarse"),
        default_steps=64,
        static=("n_steps", "n_coarse", "placement", "reference_compat", "batch_size"),
        title="Integrated Decision Gradients",
    ),
    Method(
        "guided_integrated_gradients",
        "guided_integrated_gradients",
        baseline=True,
        steps=("n_steps",),
        default_steps=200,
        static=("n_steps",),
        completeness=True,
        title="Guided Integrated Gradients",
    ),
    Method(
        "blur_integrated_gradients",
        "blur_integrated_gradients",
        steps=("n_steps",),
        default_steps=100,
        static=("n_steps", "sqrt", "batch_size"),
        completeness=True,
        title="Blur Integrated Gradients",
    ),
    Method(
        "expected_gradients",
        "expected_gradients",
        key=True,
        references=True,
        steps=("n_samples",),
        default_steps=50,
        static=("n_samples", "batch_size"),
        title="Expected Gradients",
    ),
    Method(
        "distilled_gradient_aggregation",
        "distilled_gradient_aggregation",
        baseline=True,
        steps=("n_steps",),
        default_steps=30,
        static=("n_steps", "ufg", "bias_fn", "include_first", "mask_features"),
        title="Distilled Gradient Aggregation",
    ),
    Method(
        "adversarial_gradient_integration",
        "adversarial_gradient_integration",
        input="logits",
        static=("classes", "n_classes", "selection", "max_iter", "from_original"),
        title="Adversarial Gradient Integration",
    ),
    Method(
        "full_gradients",
        "full_gradients",
        input="model",
        static=("post", "align_corners"),
        title="FullGrad",
    ),
    Method("saliency", "saliency", static=("abs",), title="Saliency"),
    Method("input_x_gradient", "input_x_gradient", title="Input x Gradient"),
    Method(
        "guided_backprop",
        "guided_backprop",
        static=("max_pool", "relu6"),
        title="Guided Backprop",
    ),
    _nt("smoothgrad", "SmoothGrad"),
    _nt("smoothgrad_sq", "SmoothGrad squared"),
    _nt("vargrad", "VarGrad"),
    Method(
        "smooth_taylor",
        "smooth_taylor",
        key=True,
        steps=("n_roots",),
        default_steps=16,
        static=("n_roots", "batch_size"),
        title="SmoothTaylor",
    ),
    Method(
        "adaptive_noising",
        "adaptive_noising",
        key=True,
        steps=("n_roots",),
        default_steps=16,
        static=("n_roots", "batch_size", "score_fn", "max_stop", "max_iterations"),
        title="SmoothTaylor with adaptive noising",
    ),
)

#: name -> `Method`, every attribution method of jaxattr.
METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in _ENTRIES})

#: Old names that still work, with a DeprecationWarning: old -> registry name.
ALIASES: Mapping[str, str] = MappingProxyType({"fullgrad": "full_gradients"})


def get(name: str | Method) -> Method:
    """The entry of `name` (a `Method` passes through); an old name warns."""
    if isinstance(name, Method):
        return name
    if name in ALIASES:
        import warnings

        warnings.warn(
            f"method name {name!r} is deprecated; use {ALIASES[name]!r}",
            DeprecationWarning,
            stacklevel=3,
        )
        name = ALIASES[name]
    if name not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}; got {name!r}")
    return METHODS[name]


def explainer(
    method: str | Method,
    /,
    *,
    output: str | Callable = "logit",
    baseline: Any = None,
    model: Any = None,
    transform: Callable[[Callable], Callable] | None = None,
    **kwargs: Any,
) -> Callable[..., Any]:
    """`explain(model_fn, x, target, key, *args) -> jaxattr.Attribution` for `method`.

    Args:
      method: a name of `METHODS` (or a `Method`); positional only, since
        `method=` is the deprecated name of the path methods' quadrature `rule=`.
      output: the scalar explained for `"scalar"` methods (`jaxattr.scalar_output`'s
        `output`: `"logit"`, `"softmax"`, ... or a callable); the other methods define
        their own, and any other value than `"logit"` is an error.
      baseline: for methods that take one: `None` (the function's default), a name
        or array (passed on), or a callable `(x, key) -> [*x.shape]` called on each
        image (e.g. a random baseline from the key).
      model: the `jaxattr.models.Model` (only for `input="model"`, FullGrad: its
        module structure; the variables are read from `model_fn.args[0]`, since
        `Model.fn` is a `Partial(apply, variables)`, so they stay traced).
      transform: wraps the resolved function `fn(f, x, ...)` (e.g. to compute in
        normalised coordinates).
      **kwargs: keyword arguments of the function (those in `Method.static` are
        Python values, fixed here).

    `args` of `explain` follow the baseline positionally: the background set of
    `expected_gradients` (an argument, so that it is traced rather than compiled in).
    The key is passed to every method (the deterministic ones ignore it).

    Raises:
      ValueError: an unknown method, `output` other than `"logit"` for a method that
        defines its own, a baseline for a method without one, or `model` missing.
    """
    entry = get(method)
    if entry.input != "scalar" and output != "logit":
        raise ValueError(
            f"output: {entry.name} defines its own output (AGI: softmax of the"
            " explained and adversarial classes; FullGrad: the logit); expected"
            f" 'logit', got {output!r}"
        )
    if baseline is not None and not entry.baseline:
        raise ValueError(
            f"baseline: {entry.name} takes no baseline; expected None, got"
            f" {type(baseline).__name__}"
        )
    if entry.input == "model" and model is None:
        raise ValueError(
            f"model: {entry.name} needs the jaxattr.models.Model (its layers' biases);"
            " got None"
        )
    kwargs = {**entry.fixed, **kwargs}

    def explain(model_fn, x, target, key, *args):
        import jaxattr
        from jaxattr import pytrees

        fn = entry.resolve()
        if transform is not None:
            fn = transform(fn)
        if entry.input == "logits":
            logits = lambda z: model_fn(pytrees.add_batch_axis(z))[0]
            return fn(logits, x, target, *args, key=key, **kwargs)
        if entry.input == "model":
            if pytrees.is_pytree(x):
                raise pytrees.refusal(entry.name, x, pytrees.SPECS[entry.name].refuse)
            from jaxattr import models

            fg = models.fullgrad_model(
                model, target, input_shape=tuple(x.shape), variables=model_fn.args[0]
            )
            return fn(fg.f, x, fg.zeros, fg.biases, fg.baseline, key=key, **kwargs)
        f = jaxattr.scalar_output(model_fn, target, output=output)
        if baseline is not None:
            b = baseline(x, key) if callable(baseline) else baseline
            args = (b, *args)
        return fn(f, x, *args, key=key, **kwargs)

    return explain


def count_kwargs(method: str | Method, n: int) -> dict[str, int]:
    """`{keyword: n}` for each keyword of `Method.steps` (e.g. IDG's `n_steps` and
    `n_coarse`)."""
    return dict.fromkeys(get(method).steps, n)
