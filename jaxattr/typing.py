"""Type aliases of the public API: `ArrayLike` in, `Array` out.

Functions accept anything `jax.numpy.asarray` does (`ArrayLike`: JAX and NumPy arrays,
Python and NumPy scalars) and return `jax.Array`s. The model-function aliases name the
two kinds of function the methods and metrics take.

>>> from jaxattr.typing import Array, ArrayLike, PRNGKey, ScalarFn
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import jax

from jaxattr.baselines import Baseline

#: What the functions return.
Array: TypeAlias = jax.Array

#: What the functions accept as an array: a JAX or NumPy array or a scalar.
ArrayLike: TypeAlias = jax.typing.ArrayLike

#: A PRNG key: a typed key (`jax.random.key(0)`) or a legacy `uint32[2]` one
#: (`jax.random.PRNGKey(0)`); both are `jax.Array`s.
PRNGKey: TypeAlias = jax.Array

#: `f(x) -> ()`: one example to the scalar explained, e.g.
#: `jaxattr.scalar_output(model_fn, target)`.
ScalarFn: TypeAlias = Callable[[Array], Array]

#: `model_fn(x) -> [N, K]`: a batch `[N, ...]` to its outputs (logits).
ModelFn: TypeAlias = Callable[[Array], Array]

#: A baseline argument (`jaxattr.baselines`): `None` (black), a name, a scalar or
#: array broadcasting to `x.shape`, a `Baseline` recipe, a callable `x -> array`, or
#: a list or tuple of these.
BaselineLike: TypeAlias = (
    None | str | ArrayLike | Baseline | Callable[[Array], ArrayLike] | Sequence[Any]
)

__all__ = ["Array", "ArrayLike", "BaselineLike", "ModelFn", "PRNGKey", "ScalarFn"]
