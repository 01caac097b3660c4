"""Evaluating a jaxpr with some equations overridden, inside every body too.

The one place where jaxattr walks JAX's jaxprs (semi-private API: equations,
their parameters, the bodies of higher-order primitives); `fast_convolutions`,
`methods.guided` and DGA's piecewise-linearity check build on it.

* `bodies(eqn)` describes the jaxprs nested in an equation of a known higher-order
  primitive (calls, `while`, `scan`, `cond`, `checkpoint`, `custom_jvp`,
  `custom_vjp`): which of the equation's inputs each body input is and which
  output each body output becomes (`Body`), for analyses such as taint or
  constant propagation. `jaxprs_in(eqn)` lists the jaxprs of any equation.
* `evaluate(jaxpr, consts, args, override)` binds the equations one by one, as
  `jax.core.eval_jaxpr` does, except those for which `override.apply` returns
  outputs; calls (`jit`, `pjit`, `closed_call`, `core_call`) are inlined, and the
  bodies of `while`, `scan`, `cond`, `checkpoint` and `custom_jvp`/`custom_vjp`
  calls are evaluated the same way (with `override.inside(eqn, body)`) and rebuilt
  with `lax.while_loop`, `lax.scan`, `lax.switch`, `jax.checkpoint`,
  `jax.custom_jvp` and `jax.custom_vjp`, keeping custom derivative rules (a
  checkpoint's recomputation in a backward pass is inlined behind the optimization
  barrier that its lowering adds).
* `run(fn, args, override_for)` traces `fn` at `args` and evaluates it so.

With the default `Override` the result computes what the traced function does;
everything is traced again, so it composes with `jit`, `vmap`, `grad` and
closures over traced values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
from jax import lax

#: Call primitives: their body is inlined.
CALLS = ("jit", "pjit", "closed_call", "core_call")
#: Checkpoint (rematerialisation) primitives, by the names JAX versions give them.
CHECKPOINTS = ("checkpoint", "remat", "remat2")


class Body(NamedTuple):
    """One jaxpr nested in an equation (a called function, a loop body, a branch).

    Attributes:
      jaxpr: the body (a `jax.extend.core.Jaxpr`).
      consts: values of its `constvars`.
      inputs: for each body input, the index of the equation input whose value it
        is (whole; for `scan`'s scanned inputs, one slice of it; for a loop carry,
        its initial value).
      fed_back: for each body input, None, or for a loop carry the index of the
        equation output whose value it takes from the loop body's previous
        iteration.
      outputs: for each body output, the index of the equation output it is (for
        `scan`'s stacked outputs, one slice of it), or None (a `while` predicate).
    """

    jaxpr: Any
    consts: tuple
    inputs: tuple[int, ...]
    fed_back: tuple[int | None, ...]
    outputs: tuple[int | None, ...]


def _open(closed) -> tuple[Any, tuple]:
    """`(jaxpr, consts)` of a `ClosedJaxpr` or a plain `Jaxpr`."""
    if isinstance(closed, jcore.ClosedJaxpr):
        return closed.jaxpr, tuple(closed.consts)
    return closed, ()


def _body(closed, inputs, fed_back=None, outputs=None) -> Body:
    jaxpr, consts = _open(closed)
    n_in, n_out = len(jaxpr.invars), len(jaxpr.outvars)
    inputs = tuple(inputs)
    fed_back = tuple(fed_back) if fed_back is not None else (None,) * n_in
    outputs = tuple(outputs) if outputs is not None else tuple(range(n_out))
    assert len(inputs) == len(fed_back) == n_in and len(outputs) == n_out
    return Body(jaxpr, consts, inputs, fed_back, outputs)


def jaxprs_in(eqn) -> list:
    """Every jaxpr among an equation's parameters (bodies, branches, ...)."""
    found = []
    for value in eqn.params.values():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, (jcore.ClosedJaxpr, jcore.Jaxpr)):
                found.append(_open(v)[0])
    return found


def bodies(eqn) -> list[Body]:
    """The bodies of an equation of a known higher-order primitive, in the order
    `evaluate` passes them to its rebuild (`while`: condition, then body); `[]`
    for any other equation (which may still hold jaxprs: `jaxprs_in`)."""
    name, params = eqn.primitive.name, eqn.params
    n_in = len(eqn.invars)
    every = range(n_in)
    if name in CALLS and "jaxpr" in params:
        return [_body(params["jaxpr"], every)]
    if name in CHECKPOINTS and "jaxpr" in params:
        return [_body(params["jaxpr"], every)]
    if name in ("custom_jvp_call", "custom_vjp_call") and "call_jaxpr" in params:
        return [_body(params["call_jaxpr"], every)]
    if name == "cond":
        return [_body(b, range(1, n_in)) for b in params["branches"]]
    if name == "scan":
        nc, ncarry = params["num_consts"], params["num_carry"]
        fed = [None] * nc + list(range(ncarry)) + [None] * (n_in - nc - ncarry)
        return [_body(params["jaxpr"], every, fed)]
    if name == "while":
        nc, nb = params["cond_nconsts"], params["body_nconsts"]
        carry = range(nc + nb, n_in)
        fed = list(range(len(carry)))
        cond = _body(
            params["cond_jaxpr"], [*range(nc), *carry], [None] * nc + fed, [None]
        )
        body = _body(
            params["body_jaxpr"], [*range(nc, nc + nb), *carry], [None] * nb + fed
        )
        return [cond, body]
    return []


class Override:
    """Which equations `evaluate` changes; the default changes none.

    Subclasses override some of the three methods.
    """

    def apply(self, eqn, invals: list) -> Sequence | None:
        """The outputs of `eqn` at `invals` (a list, one per output), or None to
        evaluate it as usual."""
        return None

    def descends(self, eqn) -> bool:
        """Whether to evaluate the bodies of `eqn` (a call, loop, branch,
        checkpoint or custom-derivative call) with overrides; if not, it is bound
        as it is."""
        return True

    def inside(self, eqn, body: Body) -> Override:
        """The override for `body` of `eqn` (default: this one)."""
        return self


def _while(eqn, run_body, invals):
    params = eqn.params
    nc, nb = params["cond_nconsts"], params["body_nconsts"]
    cond_consts, body_consts, init = (
        invals[:nc],
        invals[nc : nc + nb],
        invals[nc + nb :],
    )
    run_cond, run_loop = run_body
    # A vmapped loop whose predicate is batched has a per-lane predicate: as the
    # lowering of `while` does, it runs while any lane does, and a lane whose
    # predicate is false keeps its carry.
    batched = bool(params["cond_jaxpr"].out_avals[0].shape)

    def pred_of(carry):
        return run_cond([*cond_consts, *carry])[0]

    def cond_fun(carry):
        pred = pred_of(carry)
        return jnp.any(pred) if batched else pred

    def body_fun(carry):
        new = run_loop([*body_consts, *carry])
        if not batched:
            return new
        pred = pred_of(carry)

        def keep(old, nxt):
            mask = lax.broadcast_in_dim(pred, jnp.shape(old), tuple(range(pred.ndim)))
            return lax.select(mask, nxt, old)

        return [keep(o, n) for o, n in zip(carry, new, strict=True)]

    return list(lax.while_loop(cond_fun, body_fun, list(init)))


def _scan(eqn, run_body, invals):
    params = eqn.params
    nc, ncarry = params["num_consts"], params["num_carry"]
    consts, init, xs = invals[:nc], invals[nc : nc + ncarry], invals[nc + ncarry :]
    (run,) = run_body

    def body(carry, x):
        outs = run([*consts, *carry, *x])
        return outs[:ncarry], outs[ncarry:]

    carry, ys = lax.scan(
        body,
        list(init),
        list(xs),
        length=params["length"],
        reverse=params["reverse"],
        unroll=params["unroll"],
    )
    return [*carry, *ys]


def _cond(eqn, run_body, invals):
    index, ops = invals[0], invals[1:]
    branches = [(lambda *a, run=run: run(list(a))) for run in run_body]
    return list(lax.switch(index, branches, *ops))


def _call(eqn, run_body, invals):
    return run_body[0](list(invals))


def _checkpoint(eqn, run_body, invals):
    params = eqn.params
    prevent_cse = params["prevent_cse"]
    (run,) = run_body

    def fun(*args):
        return run(list(args))

    if not params["differentiated"]:
        # still to be differentiated: keep it a checkpoint
        return jax.checkpoint(fun, prevent_cse=prevent_cse, policy=params["policy"])(
            *invals
        )
    # The backward pass's recomputation: what its lowering does, an optimization
    # barrier on the inputs (so XLA cannot share it with the forward pass), then
    # the body inlined.
    flags = (
        (prevent_cse,) * len(invals) if isinstance(prevent_cse, bool) else prevent_cse
    )
    barred = [i for i, f in enumerate(flags) if f]
    args = list(invals)
    if barred:
        kept = lax.optimization_barrier([jnp.asarray(args[i]) for i in barred])
        for i, a in zip(barred, kept, strict=True):
            args[i] = a
    return fun(*args)


def _custom_jvp(eqn, run_body, invals):
    prim, params = eqn.primitive, eqn.params
    (run,) = run_body

    def original(*args):  # the call as it was: its own derivative rule
        return prim.bind(*args, **prim.get_bind_params(params))

    @jax.custom_jvp
    def fun(*args):
        return run(list(args))

    @fun.defjvp
    def fun_jvp(primals, tangents):
        return jax.jvp(original, primals, tangents)

    return fun(*invals)


def _custom_vjp(eqn, run_body, invals):
    prim, params = eqn.primitive, eqn.params
    (run,) = run_body
    # The call's leading `num_consts` inputs are closed-over values that it cannot
    # be differentiated by: closed over here too.
    consts, primals = invals[: params["num_consts"]], invals[params["num_consts"] :]

    def original(*args):
        return prim.bind(*consts, *args, **prim.get_bind_params(params))

    @jax.custom_vjp
    def fun(*args):
        return run([*consts, *args])

    def fwd(*args):
        return jax.vjp(original, *args)  # (outputs, pullback as the residuals)

    def bwd(pullback, cotangents):
        return pullback(cotangents)

    fun.defvjp(fwd, bwd)
    return fun(*primals)


_REBUILD: dict[str, Callable] = {
    **dict.fromkeys(CALLS, _call),
    **dict.fromkeys(CHECKPOINTS, _checkpoint),
    "while": _while,
    "scan": _scan,
    "cond": _cond,
    "custom_jvp_call": _custom_jvp,
    "custom_vjp_call": _custom_vjp,
}


def _runner(body: Body, override: Override) -> Callable[[list], list]:
    return lambda args: evaluate(body.jaxpr, body.consts, args, override)


def evaluate(jaxpr, consts: Sequence, args: Sequence, override: Override) -> list:
    """The outputs of `jaxpr` (a `jax.extend.core.Jaxpr`) at `consts` and `args`
    (one value per `constvars`/`invars`), with `override` (module docstring)."""
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = c
    for v, a in zip(jaxpr.invars, args, strict=True):
        env[v] = a
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        prim = eqn.primitive
        with eqn.ctx.manager:
            outs = override.apply(eqn, invals)
        if outs is None and prim.name in _REBUILD and override.descends(eqn):
            found = bodies(eqn)
            if found:
                runs = [_runner(b, override.inside(eqn, b)) for b in found]
                with eqn.ctx.manager:
                    outs = _REBUILD[prim.name](eqn, runs, invals)
        if outs is None:
            with eqn.ctx.manager:
                outs = prim.bind(*invals, **prim.get_bind_params(eqn.params))
            if not prim.multiple_results:
                outs = [outs]
        for v, val in zip(eqn.outvars, outs, strict=True):
            if not isinstance(v, jcore.DropVar):
                env[v] = val
    return [read(v) for v in jaxpr.outvars]


def run(fn: Callable, args: Sequence, override_for: Callable[[Any], Override]):
    """`fn(*args)` evaluated with `override_for(closed_jaxpr)` (module docstring).

    `fn` is traced at `args` (positional pytrees) with `jax.make_jaxpr`; the result
    has `fn`'s output pytree structure.
    """
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    outs = evaluate(
        closed.jaxpr, closed.consts, jax.tree.leaves(args), override_for(closed)
    )
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs)
