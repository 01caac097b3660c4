"""Old keyword and value names that still work, with a `DeprecationWarning`.

`renamed(old="new")` wraps a public function so that `fn(..., old=v)` calls
`fn(..., new=v)` after a warning, and `fn(..., old=v, new=w)` raises a `TypeError`
(as Python does for an argument given twice). The wrapper's signature is the
function's plus the old names as keyword-only parameters with default `None`, so
`jax.jit(fn, static_argnames=("old",))` keeps working; with no old name given a call
costs one dictionary look-up per old name.

`value(name, aliases, caller, argument)` maps an old value of a string option (e.g.
a baseline name) to its new one, with a warning.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str) -> None:
    """A `DeprecationWarning` attributed to the first caller outside jaxattr."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def renamed(**old_to_new: str) -> Callable[[_F], _F]:
    """Decorator: keyword arguments `old` of the function are renamed `new`."""

    def decorate(fn: _F) -> _F:
        name = fn.__name__
        signature = inspect.signature(fn)
        params = dict(signature.parameters)
        for old, new in old_to_new.items():
            if new not in params or old in params:
                raise ValueError(f"renamed: {name} has no {new}= or already has {old}=")
        extra = [
            inspect.Parameter(
                old,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=_optional(params[new].annotation),
            )
            for old, new in old_to_new.items()
        ]
        ordered = list(params.values())
        at = next(
            (i for i, p in enumerate(ordered) if p.kind is p.VAR_KEYWORD), len(ordered)
        )
        new_signature = signature.replace(
            parameters=[*ordered[:at], *extra, *ordered[at:]]
        )
        # The position of each new name when given positionally (None: keyword-only).
        positional = (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
        position = {
            new: i if params[new].kind in positional else None
            for i, new in enumerate(params)
            if new in old_to_new.values()
        }

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    value = kwargs.pop(old)
                    if value is None:  # the signature's default: not given
                        continue
                    index = position[new]
                    if new in kwargs or (index is not None and len(args) > index):
                        raise TypeError(
                            f"{name}: got both {new}= and its deprecated name {old}=;"
                            f" pass only {new}="
                        )
                    warn(f"{name}: {old}= is deprecated; use {new}={value!r}")
                    kwargs[new] = value
            return fn(*args, **kwargs)

        wrapper.__signature__ = new_signature
        wrapper.__deprecated_names__ = dict(old_to_new)
        return wrapper  # type: ignore[return-value]

    return decorate


def _optional(annotation: Any) -> Any:
    if annotation is inspect.Parameter.empty:
        return annotation
    if isinstance(annotation, str):
        return f"{annotation} | None"
    return annotation | None


def value(given: Any, aliases: Mapping[str, str], caller: str, argument: str) -> Any:
    """`aliases[given]` (with a warning) for an old string value, else `given`."""
    if isinstance(given, str) and given in aliases:
        warn(
            f"{caller}: {argument}={given!r} is deprecated; use"
            f" {argument}={aliases[given]!r}"
        )
        return aliases[given]
    return given
