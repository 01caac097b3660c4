"""`jaxattr.typing` and the annotations of the public API (`py.typed` ships)."""

import importlib
import inspect
import pkgutil
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr.methods
from jaxattr import typing as jt

ANNOTATED = [
    *(
        f"jaxattr.methods.{m.name}"
        for m in pkgutil.iter_modules(jaxattr.methods.__path__)
    ),
    "jaxattr.engine",
    "jaxattr.baselines",
    "jaxattr.targets",
    "jaxattr.quadrature",
    "jaxattr.batching",
    "jaxattr.sharding",
]


def public_functions(module_name):
    module = importlib.import_module(module_name)
    for name, fn in sorted(vars(module).items()):
        if name.startswith("_") or not inspect.isfunction(fn):
            continue
        if fn.__module__ == module_name:  # defined here, not imported
            yield name, fn


@pytest.mark.parametrize("module_name", ANNOTATED)
def test_every_public_parameter_and_result_is_annotated(module_name):
    missing = [
        f"{name}({p.name})"
        for name, fn in public_functions(module_name)
        for p in inspect.signature(fn).parameters.values()
        if p.annotation is inspect.Parameter.empty
    ]
    assert not missing, f"{module_name}: parameters without annotation: {missing}"


@pytest.mark.parametrize(
    "module_name", [m for m in ANNOTATED if m != "jaxattr.baselines"]
)
def test_annotations_resolve(module_name):
    # `typing.get_type_hints` evaluates them (a documentation tool does the same);
    # `jaxattr.baselines` imports its aliases for type checkers only (jaxattr.typing
    # imports its `Baseline`).
    for _, fn in public_functions(module_name):
        typing.get_type_hints(fn)


def test_every_module_has_public_functions():
    # The table above names modules that exist and hold functions (a rename would
    # otherwise leave the test above checking nothing).
    for name in ANNOTATED:
        assert list(public_functions(name)), name


def test_aliases_accept_what_they_say():
    assert jt.Array is jax.Array
    key = jax.random.key(0)
    assert isinstance(key, jt.PRNGKey)
    assert isinstance(jax.random.PRNGKey(0), jt.PRNGKey)
    for value in (1.0, 2, np.ones(2), jnp.ones(2), np.float32(1.0)):
        assert isinstance(value, jt.ArrayLike), type(value)
    assert not isinstance("black", jt.ArrayLike)
    # a ScalarFn maps an example to a scalar, a ModelFn a batch to [N, K]
    f: jt.ScalarFn = jaxattr.scalar_output(lambda z: z.sum(-1, keepdims=True), 0)
    assert f(jnp.ones(3)).shape == ()
