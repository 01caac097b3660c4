"""`jaxattr explain`: explain image classifications and write figures and a table.

    jaxattr explain [IMAGES_OR_FOLDERS...] --model efficientnet_lite0 \\
        --method integrated_gradients --out jaxattr-out

With no images, it explains the offline default photos that ship with the
dependencies (`jaxattr.images.default_images`). For each image it writes
`<out>/<name>.png` (image, heat map, overlay, predicted class and probability) and
appends a row to `<out>/results.csv` and `<out>/results.jsonl`. Rows are written as
each image completes; a re-run with the same settings skips images already done,
so an interrupted run resumes without losing or recomputing results. All inputs are
read and checked before anything is written: a bad input exits with status 2 and a
one-line message.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxattr

# Method name -> the number of steps `--n-steps` defaults to ("" where it has none).
METHODS = {
    "integrated_gradients": 64,
    "gnl_integrated_gradients": 64,
    "split_integrated_gradients": 64,
    "integrated_decision_gradients": 64,
    "guided_integrated_gradients": 200,
    "blur_integrated_gradients": 100,
    "expected_gradients": 50,
    "distilled_gradient_aggregation": 30,
    "adversarial_gradient_integration": "",
    "fullgrad": "",
    "saliency": "",
    "input_x_gradient": "",
    "guided_backprop": "",
    "smoothgrad": "",
    "smoothgrad_sq": "",
    "vargrad": "",
    "smooth_taylor": "",
    "adaptive_noising": "",
}
# Methods with a quadrature rule, and methods that take --baseline.
PATH_METHODS = (
    "integrated_gradients",
    "gnl_integrated_gradients",
    "split_integrated_gradients",
)
BASELINE_METHODS = (
    *PATH_METHODS,
    "integrated_decision_gradients",
    "guided_integrated_gradients",
    "distilled_gradient_aggregation",
)
# Methods that need the whole model rather than one scalar output.
MODEL_METHODS = ("adversarial_gradient_integration", "fullgrad")
FIELDS = (
    "file",
    "model",
    "method",
    "predicted_index",
    "predicted_class",
    "probability",
    "target",
    "output",
    "n_steps",
    "rule",
    "baseline",
    "delta",
    "relative_delta",
    "seconds",
    "figure",
)


class UsageError(Exception):
    """A bad argument or input: reported in one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxattr", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("explain", help="explain image classifications")
    e.add_argument(
        "images", nargs="*", help="image files or folders (default: demo photos)"
    )
    e.add_argument("--model", default="efficientnet_lite0")
    e.add_argument(
        "--weights", default="default", help="path or URL; default: packaged"
    )
    e.add_argument("--method", default="integrated_gradients", choices=tuple(METHODS))
    e.add_argument("--out", default="jaxattr-out", help="output folder")
    e.add_argument("--target", default="predicted", help="'predicted' or a class index")
    e.add_argument("--output", default="logit", choices=tuple(jaxattr.OUTPUTS))
    e.add_argument(
        "--n-steps",
        type=int,
        help="path steps or samples (default: 64 for IG, GNL-IG, Split-IG, IDG;"
        " 200 Guided IG; 100 Blur IG; 50 Expected Gradients; 30 DGA)",
    )
    e.add_argument("--rule", default="gausslegendre", choices=jaxattr.quadrature.RULES)
    e.add_argument(
        "--baseline", default="black", choices=tuple(jaxattr.baselines.NAMED)
    )
    e.add_argument(
        "--split",
        default="relative",
        choices=("relative", "idg"),
        help="split_integrated_gradients: Miglani's relative threshold or IDG's LIG",
    )
    e.add_argument(
        "--side",
        default="left",
        choices=("left", "right"),
        help="split_integrated_gradients: the part to show",
    )
    e.add_argument("--batch-size", type=int, default=8, help="path nodes per chunk")
    e.add_argument(
        "--nt-samples", type=int, default=16, help="noisy samples / SmoothTaylor roots"
    )
    e.add_argument(
        "--stdev-spread", type=float, help="noise as a fraction of the range"
    )
    e.add_argument(
        "--max-iterations", type=int, default=5, help="adaptive noising search steps"
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-figures", action="store_true", help="write the table only")
    e.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _method(args, model) -> callable:
    """`call(model_fn, x, target, key, references) -> Attribution` for `--method`.

    `model` is the loaded `jaxattr.models.Model`; `references` `[R, H, W, 3]` is the
    background set of `expected_gradients` (an argument, so that it is not compiled in
    as a constant), unused by the other methods.
    """
    m = args.method
    chunk = {"batch_size": args.batch_size}
    spread = {} if args.stdev_spread is None else {"stdev_spread": args.stdev_spread}
    kw = {"baseline": args.baseline} if m in BASELINE_METHODS else {}
    if m in PATH_METHODS:
        kw.update(n_steps=args.n_steps, method=args.rule, **chunk)
    fn = getattr(jaxattr, m, None)
    if m == "split_integrated_gradients":
        kw.update(definition=args.split, side=args.side)
    elif m == "integrated_decision_gradients":
        kw.update(n_steps=args.n_steps, n_coarse=args.n_steps, **chunk)
    elif m in ("guided_integrated_gradients", "distilled_gradient_aggregation"):
        kw.update(n_steps=args.n_steps)
    elif m == "blur_integrated_gradients":
        kw.update(n_steps=args.n_steps, **chunk)
    elif m == "expected_gradients":
        kw.update(n_samples=args.n_steps, **chunk)
    elif m in jaxattr.NT_TYPES:
        kw.update(nt_type=m, nt_samples=args.nt_samples, **spread)
        kw["nt_samples_batch_size"] = args.batch_size
        fn = functools.partial(jaxattr.noise_tunnel, jaxattr.saliency)
    elif m == "smooth_taylor":
        kw.update(n_roots=args.nt_samples, **spread, **chunk)
    elif m == "adaptive_noising":
        kw.update(n_roots=args.nt_samples, max_iterations=args.max_iterations, **chunk)
    elif m == "adversarial_gradient_integration":
        # the paper's 20 false classes, or every false class of a smaller model
        kw.update(n_classes=min(20, len(model.class_names) - 1), **chunk)

        def call_agi(model_fn, x, target, key, references):
            logits = lambda z: model_fn(z[None])[0]
            return fn(logits, x, target, key=key, **kw)

        return call_agi
    elif m == "fullgrad":

        def call_fullgrad(model_fn, x, target, key, references):
            # model_fn is a Partial of (apply, variables): pass the traced variables.
            from jaxattr import models

            fg = models.fullgrad_model(
                model, target, input_shape=x.shape, variables=model_fn.args[0]
            )
            return jaxattr.full_gradients(fg.f, x, fg.zeros, fg.biases, fg.baseline)

        return call_fullgrad

    def call(model_fn, x, target, key, references):
        f = jaxattr.scalar_output(model_fn, target, output=args.output)
        if m == "expected_gradients":
            return fn(f, x, references, key=key, **kw)
        return fn(f, x, key=key, **kw)

    return call


def _inputs(paths: list[str], size: int, resize: int):
    """[(name, image, label)] for the given files/folders, or the default photos."""
    from jaxattr import images

    kw = {"size": size, "resize": resize}
    if not paths:
        return [(d.name, d.image, d.label) for d in images.default_images(**kw)]
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [(str(q), x, y) for q, x, y in images.iter_folder(p, **kw)]
        else:
            found.append((str(p), images.load_image(p, **kw), None))
    return found


def _row_key(row: dict) -> tuple:
    keys = (
        "file",
        "model",
        "method",
        "target",
        "output",
        "n_steps",
        "rule",
        "baseline",
    )
    return tuple(str(row[k]) for k in keys)


def _done_rows(out: Path) -> set[tuple]:
    path = out / "results.jsonl"
    if not path.exists():
        return set()
    done = set()
    for line in path.read_text().splitlines():
        try:
            done.add(_row_key(json.loads(line)))
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by an interruption is simply recomputed
    return done


def _append(out: Path, row: dict) -> None:
    new_csv = not (out / "results.csv").exists()
    with open(out / "results.csv", "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        if new_csv:
            w.writeheader()
        w.writerow(row)
    with open(out / "results.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")


def explain(args) -> int:
    from jaxattr import models

    if args.target != "predicted" and not args.target.lstrip("-").isdigit():
        raise UsageError(
            f"--target must be 'predicted' or a class index; got {args.target!r}"
        )
    if args.n_steps is None:
        args.n_steps = METHODS[args.method] or None
    for name in ("n_steps", "batch_size", "nt_samples", "max_iterations"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(
                f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}"
            )
    try:
        model = models.load(args.model, weights=args.weights)
    except (ValueError, FileNotFoundError, OSError) as err:
        raise UsageError(f"--model/--weights: {err}") from err
    size = model.input_size[0]
    # ImageNet's eval crop: short side to 256, centre 224; CIFAR images are used whole.
    resize = (
        size if models.MODELS[args.model].dataset == "cifar10" else size * 256 // 224
    )
    try:
        inputs = _inputs(args.images, size, resize)
    except (FileNotFoundError, IsADirectoryError, ValueError, OSError) as err:
        raise UsageError(str(err)) from err
    if not inputs:
        raise UsageError("no images to explain")
    n_classes = len(model.class_names)
    if args.target != "predicted" and not 0 <= int(args.target) < n_classes:
        raise UsageError(f"--target must be in [0, {n_classes}); got {args.target}")

    if args.method in MODEL_METHODS and args.output != "logit":
        raise UsageError(
            f"--output {args.output}: {args.method} defines its own output (AGI:"
            " softmax of the explained and adversarial classes; FullGrad: the logit)"
        )
    # Expected Gradients' background set: the explained images themselves.
    references = None
    if args.method == "expected_gradients":
        references = jnp.stack([jnp.asarray(image) for _, image, _ in inputs])
    if args.method == "expected_gradients":
        baseline = "background:inputs"
    elif args.method == "split_integrated_gradients":
        baseline = f"{args.baseline}; {args.split} split, {args.side} part"
    else:
        baseline = args.baseline if args.method in BASELINE_METHODS else ""
    call = _method(args, model)
    settings = {
        "model": args.model,
        "method": args.method,
        "output": args.output,
        "n_steps": args.n_steps or "",
        "rule": args.rule if args.method in PATH_METHODS else "",
        "baseline": baseline,
    }

    # The model function is an argument (a pytree holding the weights), not a
    # closed-over constant: constants make XLA compile slowly for large models.
    @jax.jit
    def run(model_fn, x, key, references):
        probs = jax.nn.softmax(model_fn(x[None])[0])
        predicted = jnp.argmax(probs)
        target = predicted if args.target == "predicted" else int(args.target)
        result = call(model_fn, x, target, key, references)
        return predicted, probs[predicted], target, result

    # Trace once before writing anything: a method that refuses these settings (e.g.
    # DGA's shortcut on a softmax output) fails here, with nothing written.
    try:
        run.lower(
            model.fn, jnp.asarray(inputs[0][1]), jax.random.key(args.seed), references
        )
    except (ValueError, TypeError) as err:
        raise UsageError(f"--method {args.method}: {str(err).splitlines()[0]}") from err
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = _done_rows(out)
    start = time.perf_counter()
    todo = [
        item
        for item in inputs
        if _row_key(dict(settings, file=item[0], target=args.target)) not in done
    ]
    if not args.quiet and len(todo) < len(inputs):
        print(
            f"resuming: {len(inputs) - len(todo)} of {len(inputs)} images already done",
            file=sys.stderr,
        )
    for i, (name, image, _) in enumerate(todo):
        t0 = time.perf_counter()
        key = jax.random.key(args.seed)
        predicted, prob, _target, result = jax.block_until_ready(
            run(model.fn, jnp.asarray(image), key, references)
        )
        seconds = time.perf_counter() - t0
        delta = float(np.mean(np.asarray(result.delta)))
        gap = _gap(result)
        stem = Path(name).stem if Path(name).suffix else name
        figure = ""
        if not args.no_figures:
            row_key = dict(settings, file=name, target=args.target)
            figure = _figure(
                out / f"{_figure_stem(stem, row_key)}.png",
                stem,
                image,
                result,
                model,
                int(predicted),
                float(prob),
                args,
                delta,
            )
        row = dict(
            settings,
            file=name,
            predicted_index=int(predicted),
            predicted_class=model.class_names[int(predicted)],
            probability=round(float(prob), 6),
            target=args.target,
            delta="" if np.isnan(delta) else delta,
            relative_delta=""
            if np.isnan(delta) or np.isnan(gap) or gap == 0
            else abs(delta) / abs(gap),
            seconds=round(seconds, 3),
            figure=figure,
        )
        _append(out, row)
        if not args.quiet:
            elapsed = time.perf_counter() - start
            eta = elapsed / (i + 1) * (len(todo) - i - 1)
            print(
                f"[{i + 1}/{len(todo)}] {name}: {row['predicted_class']} (p={float(prob):.3f})"
                f" {seconds:.1f}s, ETA {eta:.0f}s",
                file=sys.stderr,
            )
    if not args.quiet:
        print(f"wrote {out / 'results.csv'}", file=sys.stderr)
    return 0


def _gap(result) -> float:
    aux = result.aux or {}
    if "f_x" in aux:
        return float(aux["f_x"] - jnp.mean(aux["f_baseline"]))
    return float("nan")


def _figure_stem(stem: str, row: dict) -> str:
    """`<photo stem>-<method>-<8 hex digits of the row's key>`: photos with one stem
    in different folders, and runs of other methods or settings into the same
    `--out`, get their own figure (results.csv's `figure` column names it)."""
    digest = hashlib.sha1("\x1f".join(_row_key(row)).encode()).hexdigest()[:8]
    return f"{stem}-{row['method']}-{digest}"


def _figure(path, stem, image, result, model, predicted, prob, args, delta) -> str:
    from jaxattr import viz

    note = args.method
    if args.n_steps:
        note += f", {args.n_steps} steps"
    if args.method in PATH_METHODS:
        note += f" ({args.rule}), baseline {args.baseline}, delta {delta:.3g}"
    fig, _ = viz.explanation_figure(
        image,
        np.asarray(result.attributions),
        title=stem,
        pred_label=model.class_names[predicted],
        prob=prob,
        method_name=args.method,
        note=note,
    )
    viz.save_figure(fig, path)
    return path.name


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return explain(args)
    except UsageError as err:
        print(f"jaxattr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished rows are kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
