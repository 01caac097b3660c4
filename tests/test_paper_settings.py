"""Each experiment README's "Paper settings" table against what its configs build.

The table has the columns `setting | authors | default | cifar`. A cell's value is the
backticked span it starts with (JSON, or a bare word); a cell that does not start with
one states no value (e.g. "not stated"). For every row and config:

* the value is what the built experiment *effectively* uses: every method and metric
  is called once with spies in place of the jaxattr functions, on a fake linear model,
  and the test reads what they received (the baseline pixel, whether the scalar is the
  logit or the softmax, the noise level in the model's normalised units, ...);
* where the authors' value is given, the config's equals it, or its cell says
  "deviation" and why.

A row without a check, or a check without a row, fails. Nothing is compiled and no
weights are loaded: the models are stubs with the real normalisation of their name.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("jaxattr.runs")

import experiments
import jaxattr
from experiments import _common as c
from jaxattr import models
from jaxattr.runs import Experiment

st_module = importlib.import_module("jaxattr.methods.smooth_taylor")
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("default", "cifar")
METHODS = (
    "integrated_gradients",
    "gnl_integrated_gradients",
    "split_integrated_gradients",
    "guided_integrated_gradients",
    "adversarial_gradient_integration",
    "integrated_decision_gradients",
    "smooth_taylor",
    "adaptive_noising",
    "noise_tunnel",
    "distilled_gradient_aggregation",
    "input_x_gradient",
    "guided_backprop",
)
METRICS = ("insertion", "deletion", "morf", "lerf", "aupc", "autvc")
X = jax.random.uniform(jax.random.key(0), (32, 32, 3))
TARGET = jnp.int32(3)
W = jax.random.normal(jax.random.key(1), (32 * 32 * 3, 10))


def fake_model(z):
    """A linear stand-in for the model: `[N, 32, 32, 3] -> [N, 10]` logits."""
    return z.reshape(z.shape[0], -1) @ W


# ------------------------------------------------------------------------ the tables
def _value(cell: str):
    """The value a cell starts with (a backticked span), or None."""
    m = re.match(r"`([^`]*)`", cell.strip())
    if not m:
        return None
    text = m.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _cells(line: str) -> list[str]:
    """The cells of a table line; `\\|` is a literal `|` inside a cell."""
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [p.strip().replace("\\|", "|") for p in parts]


def paper_table(paper: str) -> list[dict]:
    """The rows of the first table under `## Paper settings` in the paper's README."""
    text = (ROOT / "experiments" / paper / "README.md").read_text()
    m = re.search(
        r"^## Paper settings[^\n]*\n(?:[^|\n][^\n]*\n|\n)*?((?:\|[^\n]*\n)+)",
        text,
        re.MULTILINE,
    )
    assert m, f"experiments/{paper}/README.md has no '## Paper settings' table"
    lines = [ln for ln in m.group(1).splitlines() if ln.startswith("|")]
    header = _cells(lines[0])
    assert header == ["setting", "authors", "`default`", "`cifar`"], header
    rows = []
    for ln in lines[2:]:
        cells = _cells(ln)
        assert len(cells) == 4, (paper, ln)
        rows.append(
            {
                "setting": cells[0],
                "authors": _value(cells[1]),
                "default": (_value(cells[2]), cells[2]),
                "cifar": (_value(cells[3]), cells[3]),
            }
        )
    return rows


def same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(np.isclose(a, b, rtol=1e-5, atol=1e-7))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    return a == b


# --------------------------------------------------------------------- the built runs
def _stub(name: str, *args, **kwargs) -> models.Model:
    """A model with `name`'s real normalisation and no weights."""
    spec = models.MODELS[name]
    return models.Model(None, None, None, {}, spec.input_size, (), name, spec.normalise)


def _record(calls: list, name: str, fn):
    real = fn

    def spy(*args, **kwargs):
        calls.append(SimpleNamespace(name=name, args=args, kwargs=kwargs, real=real))
        if name in METRICS:
            return SimpleNamespace(score=jnp.zeros(()), curve=None)
        if name == "noise_tunnel":  # (method, f, x, ...)
            x = args[2]
        elif name == "adversarial_gradient_integration":
            x = args[1]
        else:
            x = args[1]
        if name == "smooth_taylor":  # the absolute noise, so a vmapped sweep shows it
            sigma = st_module.noise_level(
                x,
                stdevs=kwargs.get("stdevs"),
                stdev_spread=kwargs.get("stdev_spread"),
                normalisation=kwargs.get("normalisation"),
            )
            nan = jnp.full((), jnp.nan)
            return jaxattr.Attribution(jnp.broadcast_to(sigma, x.shape), nan, {})
        return jaxattr.Attribution(jnp.zeros_like(x), jnp.full((), jnp.nan), {})

    return spy


def run(paper: str, config_name: str, monkeypatch) -> SimpleNamespace:
    """Build `paper`'s config with spies, call every method and metric once."""
    config = dict(experiments.load(paper).CONFIGS[config_name])
    config["weights"] = "random"
    if config.get("models") == "cifar_with_weights":
        config["models"] = ["cifar_resnet20"]
    monkeypatch.setattr(c, "load_model", _stub)
    calls: list = []
    for name in METHODS:
        monkeypatch.setattr(jaxattr, name, _record(calls, name, getattr(jaxattr, name)))
    for name in METRICS:
        fn = getattr(jaxattr.metrics, name)
        monkeypatch.setattr(jaxattr.metrics, name, _record(calls, name, fn))
    built = experiments.load(paper).build(config)
    exps = [built] if isinstance(built, Experiment) else list(built)
    exp = exps[0]
    by_method, by_metric = {}, {}
    key = jax.random.key(0)
    for e in exps:
        for m_name, method in e.methods.items():
            if m_name == "fullgrad":  # no jaxattr entry point to spy on; no settings
                continue
            start = len(calls)
            out = method(fake_model, X, TARGET, key)
            by_method[m_name] = (calls[start:], out)
        for m_name, metric in e.metrics.items():
            start = len(calls)
            metric(fake_model, X, jnp.zeros_like(X), TARGET, key)
            by_metric[m_name] = calls[start:]
    a = np.asarray(exp.model.normalise(jnp.zeros((1, 1, 3)))).reshape(3)
    b = np.asarray(exp.model.normalise(jnp.ones((1, 1, 3)))).reshape(3)
    return SimpleNamespace(
        config=config,
        exps=exps,
        methods=by_method,
        metrics=by_metric,
        zero=-a / (b - a),  # the pixel the model sees as 0
        std=1.0 / (b - a),
    )


# ------------------------------------------------------------------ effective values
def call(r, method: str, name: str | None = None):
    """The (only) recorded call of jaxattr function `name` made by `method`."""
    calls = [k for k in r.methods[method][0] if name is None or k.name == name]
    assert len(calls) == 1, (method, [k.name for k in r.methods[method][0]])
    return calls[0]


def kwarg(k, name):
    """A keyword as the function received it, or the function's default."""
    if name in k.kwargs:
        return k.kwargs[name]
    return inspect.signature(k.real).parameters[name].default


def as_py(v):
    v = np.asarray(v).tolist()
    return v


def baseline_name(r, b, x=X):
    b = np.asarray(b)
    if np.allclose(b, 0):
        return "black"
    if np.allclose(b, np.broadcast_to(r.zero, x.shape), atol=1e-6):
        return "normalised_zero"
    if b.std() > 0.1 and 0 <= b.min() and b.max() <= 1:
        return "uniform"
    return as_py(b.reshape(-1, 3).mean(0))


def method_baseline(r, method, name=None):
    k = call(r, method, name)
    return baseline_name(r, k.args[2])


def output_of(r, method, name=None):
    """`logit` or `softmax`: what the scalar `f` the method received returns."""
    k = call(r, method, name)
    if k.name == "adversarial_gradient_integration":
        v = np.asarray(k.args[0](X))
        return "logit" if np.allclose(v, fake_model(X[None])[0], rtol=1e-5) else v
    f = k.args[1] if k.name == "noise_tunnel" else k.args[0]
    x = k.args[2] if k.name == "noise_tunnel" else k.args[1]
    v = float(f(x))
    logits = fake_model(X[None])[0]
    if np.isclose(v, float(logits[TARGET]), rtol=1e-4):
        return "logit"
    if np.isclose(v, float(jax.nn.softmax(logits)[TARGET]), rtol=1e-4):
        return "softmax"
    return v


def space_of(r, method, name=None):
    """`normalised` if the method received `x_n = (x - mean) / std`, `pixels` if `x`."""
    k = call(r, method, name)
    x = np.asarray(k.args[2] if k.name == "noise_tunnel" else k.args[1])
    if np.allclose(x, X):
        return "pixels"
    if np.allclose(x, (np.asarray(X) - r.zero) / r.std, atol=1e-5):
        return "normalised"
    return "other"


def normalised_sigma(r, attributions):
    """A smooth_taylor spy's output (pixel noise per channel) in normalised units."""
    per_channel = np.asarray(attributions)[..., 0, 0, :] / r.std
    assert np.allclose(per_channel, per_channel[..., :1], rtol=1e-5), per_channel
    return as_py(per_channel[..., 0])


def metric_kw(r, metric, name):
    (k,) = r.metrics[metric]
    return kwarg(k, name)


def substrate(r, metric):
    mean = np.asarray(metric_kw(r, metric, "mean"), np.float64)
    return baseline_name(r, np.broadcast_to(mean, X.shape))


def kw(r, method, name, fn=None):
    return kwarg(call(r, method, fn), name)


def adaptive_sigma0(r):
    k = call(r, "smooth_taylor_adaptive")
    norm = k.kwargs.get("normalisation")
    if (
        k.kwargs.get("sigma_init") is None
        and norm is not None
        and np.allclose(norm[0], r.zero, atol=1e-6)
        and np.allclose(norm[1], r.std)
    ):
        return "mean|x_n|"
    return "other"


def adaptive_units(r):
    norm = call(r, "smooth_taylor_adaptive").kwargs.get("normalisation")
    ok = norm is not None and np.allclose(norm[1], r.std, rtol=1e-5)
    return "normalised" if ok else "pixels"


def ig_methods(r):
    return [k for m, (ks, _) in r.methods.items() for k in ks]


CHECKS = {
    "ig": {
        "output": lambda r: sorted({output_of(r, m) for m in r.methods}),
        "baseline": lambda r: sorted({method_baseline(r, m) for m in r.methods}),
        "steps": lambda r: sorted({kwarg(k, "n_steps") for k in ig_methods(r)}),
        "rules": lambda r: sorted({kwarg(k, "rule") for k in ig_methods(r)}),
    },
    "smooth_taylor": {
        "output": lambda r: sorted({output_of(r, m) for m in r.methods}),
        "IG steps": lambda r: kw(r, "ig_black", "n_steps"),
        "IG rule": lambda r: kw(r, "ig_black", "rule"),
        "IG baselines": lambda r: [
            method_baseline(r, "ig_black"),
            method_baseline(r, "ig_uniform"),
        ],
        "SmoothGrad samples": lambda r: kw(r, "smoothgrad", "nt_samples"),
        "SmoothGrad noise, fraction of the range": lambda r: kw(
            r, "smoothgrad", "stdev_spread"
        ),
        "SmoothGrad coordinates": lambda r: space_of(r, "smoothgrad"),
        "SmoothGrad gradient": lambda r: call(r, "smoothgrad").args[0].__name__,
        "SmoothTaylor roots": lambda r: kw(r, "smooth_taylor", "n_roots"),
        "SmoothTaylor sigma, normalised units": lambda r: normalised_sigma(
            r, r.methods["smooth_taylor"][1].attributions
        ),
        "sigma sweep, normalised units": lambda r: normalised_sigma(
            r, r.methods["smooth_taylor_sweep"][1].attributions
        ),
        "adaptive objective": lambda r: kw(r, "smooth_taylor_adaptive", "score_fn"),
        "adaptive sigma_0": adaptive_sigma0,
        "adaptive units": adaptive_units,
        "adaptive learning rate": lambda r: kw(
            r, "smooth_taylor_adaptive", "learning_rate"
        ),
        "adaptive decay": lambda r: kw(r, "smooth_taylor_adaptive", "learning_decay"),
        "adaptive max stop": lambda r: kw(r, "smooth_taylor_adaptive", "max_stop"),
        "adaptive max iterations": lambda r: kw(
            r, "smooth_taylor_adaptive", "max_iterations"
        ),
        "adaptive roots": lambda r: kw(r, "smooth_taylor_adaptive", "n_roots"),
        "AUPC kernel": lambda r: metric_kw(r, "aupc", "kernel_size"),
        "AUPC regions": lambda r: metric_kw(r, "aupc", "n_regions"),
        "AUPC perturbations": lambda r: metric_kw(r, "aupc", "n_perturb_samples"),
        "AUPC output": lambda r: metric_kw(r, "aupc", "output"),
        "adaptive AUPC settings": lambda r: [
            kw(r, "smooth_taylor_adaptive", "score_kwargs")[k]
            for k in ("kernel_size", "n_regions", "n_perturb_samples")
        ],
        "AUTVC downscale": lambda r: metric_kw(r, "autvc", "downscale"),
        "AUTVC min size": lambda r: metric_kw(r, "autvc", "min_size"),
        "AUTVC norm": lambda r: metric_kw(r, "autvc", "lp_norm"),
    },
    "idg": {
        "output (IG, LIG, AGI, IDG)": lambda r: sorted(
            {output_of(r, m) for m in ("ig", "left_ig", "agi", "idg")}
        ),
        "baseline (IG, LIG, Guided IG, IDG)": lambda r: sorted(
            {
                method_baseline(r, m)
                for m in r.methods
                if m not in ("agi",)  # AGI has no baseline
            }
        ),
        "IG steps": lambda r: kw(r, "ig", "n_steps"),
        "IG rule": lambda r: kw(r, "ig", "rule"),
        "LIG steps": lambda r: kw(r, "left_ig", "n_steps"),
        "LIG definition": lambda r: kw(r, "left_ig", "definition"),
        "LIG nodes": lambda r: kw(r, "left_ig", "rule"),
        "Guided IG steps": lambda r: kw(r, "guided_ig", "n_steps"),
        "Guided IG fraction": lambda r: kw(r, "guided_ig", "fraction"),
        "Guided IG max_dist": lambda r: kw(r, "guided_ig", "max_dist"),
        "Guided IG output": lambda r: output_of(r, "guided_ig"),
        "AGI eps": lambda r: kw(r, "agi", "eps"),
        "AGI iterations": lambda r: kw(r, "agi", "max_iter"),
        "AGI false classes": lambda r: kw(r, "agi", "n_classes"),
        "AGI steps from the original x": lambda r: kw(r, "agi", "from_original"),
        "IDG N": lambda r: kw(r, "idg", "n_coarse"),
        "IDG M": lambda r: kw(r, "idg", "n_steps"),
        "IDG authors' code (idg_reference)": lambda r: kw(
            r, "idg_reference", "reference_compat"
        ),
        "score": lambda r: sorted(
            {metric_kw(r, m, "output") for m in ("insertion", "deletion")}
        ),
        "pixels per step": lambda r: metric_kw(r, "deletion", "step"),
        "deletion substrate": lambda r: substrate(r, "deletion"),
        "insertion start": lambda r: metric_kw(r, "insertion", "perturb_baseline"),
        "heat map": lambda r: metric_kw(r, "insertion", "reduction"),
    },
    "gnl": {
        "output": lambda r: sorted({output_of(r, m) for m in ("ig", "gnl_ig")}),
        "steps": lambda r: kw(r, "gnl_ig", "n_steps"),
        "rule": lambda r: kw(r, "gnl_ig", "rule"),
        "baseline": lambda r: sorted({method_baseline(r, m) for m in ("ig", "gnl_ig")}),
        "max-pool rule": lambda r: kw(r, "gnl_ig", "max_pool"),
        "ReLU6 guided": lambda r: kw(r, "gnl_ig", "relu6"),
        "score": lambda r: sorted(
            {metric_kw(r, m, "output") for m in ("insertion", "deletion")}
        ),
        "pixels per step": lambda r: metric_kw(r, "deletion", "step"),
        "deletion substrate": lambda r: substrate(r, "deletion"),
        "insertion start": lambda r: metric_kw(r, "insertion", "perturb_baseline"),
        "heat map": lambda r: metric_kw(r, "insertion", "reduction"),
    },
    "dga": {
        "DGA N": lambda r: kw(r, "dga", "n_steps"),
        "DGA q": lambda r: kw(r, "dga", "q"),
        "DGA beta": lambda r: kw(r, "dga", "beta"),
        "DGA sum includes n = 0": lambda r: kw(r, "dga", "include_first"),
        "DGA masking towards": lambda r: method_baseline(r, "dga"),
        "DGA output": lambda r: output_of(r, "dga"),
        "gradient x input, Guided Backprop: input": lambda r: sorted(
            {space_of(r, m) for m in ("grad_x_input", "guided_backprop")}
        ),
        "IG steps": lambda r: kw(r, "ig", "n_steps"),
        "IG baseline": lambda r: method_baseline(r, "ig"),
        "Guided IG steps, fraction, max_dist": lambda r: [
            kw(r, "guided_ig", k) for k in ("n_steps", "fraction", "max_dist")
        ],
        "Guided IG baseline": lambda r: method_baseline(r, "guided_ig"),
        "score": lambda r: sorted(
            {metric_kw(r, m, "output") for m in ("morf", "lerf", "insertion")}
        ),
        "MoRF/LeRF removal value": lambda r: sorted(
            {substrate(r, m) for m in ("morf", "lerf")}
        ),
        "pixels per step": lambda r: sorted(
            {metric_kw(r, m, "step") for m in ("morf", "lerf")}
            | {metric_kw(r, m, "step") for m in ("insertion", "deletion")}
        ),
        "insertion start": lambda r: metric_kw(r, "insertion", "perturb_baseline"),
    },
}


@pytest.mark.parametrize("paper", sorted(CHECKS))
def test_every_table_row_has_a_check_and_back(paper):
    assert sorted(experiments.PAPERS) == sorted(CHECKS)
    settings = [row["setting"] for row in paper_table(paper)]
    assert len(settings) == len(set(settings)), settings
    assert sorted(settings) == sorted(CHECKS[paper]), (
        f"experiments/{paper}/README.md 'Paper settings' rows and"
        " tests/test_paper_settings.py CHECKS differ: "
        f"{sorted(set(settings) ^ set(CHECKS[paper]))}"
    )


@pytest.mark.parametrize("config_name", CONFIGS)
@pytest.mark.parametrize("paper", sorted(CHECKS))
def test_configs_use_the_settings_of_the_table(paper, config_name, monkeypatch):
    r = run(paper, config_name, monkeypatch)
    wrong = []
    for row in paper_table(paper):
        value, cell = row[config_name]
        assert value is not None, (paper, row["setting"], config_name, cell)
        got = CHECKS[paper][row["setting"]](r)
        if not same(value, got):
            wrong.append(f"{row['setting']}: README {value!r}, built {got!r}")
        authors = row["authors"]
        if authors is not None and not same(authors, value) and "deviation" not in cell:
            wrong.append(
                f"{row['setting']}: authors {authors!r}, config {value!r},"
                " and the cell does not say 'deviation'"
            )
    assert not wrong, f"{paper}/{config_name}:\n" + "\n".join(wrong)


def test_the_table_parser_and_comparison():
    assert _value("`0.5` (normalised)") == 0.5
    assert _value("`sign_mask`") == "sign_mask"
    assert _value("`[1, 2]` x") == [1, 2]
    assert _value("not stated; `50`") is None
    assert same(0.5, 0.5000001) and not same(0.5, 0.6)
    assert same([1, 2.0], [1, 2]) and not same(True, 1) and not same("a", "b")


@pytest.mark.parametrize("paper", sorted(CHECKS))
def test_the_other_cifar_architectures_change_only_the_model(paper):
    """`cifar_resnet18` and `cifar_vgg11_bn` (GNL: `cifar_maxpool` and
    `cifar_maxpool_vgg11`, which add the described max-pool rule as a second GNL
    method) are the `cifar` column with another model, so the table's `cifar` column
    holds for them; each paper has both trained max-pool nets."""
    configs = experiments.load(paper).CONFIGS
    other = {
        "cifar_resnet18",
        "cifar_vgg11_bn",
        "cifar_maxpool",
        "cifar_maxpool_vgg11",
    } & set(configs)
    seen = set()
    for name in other:
        changed = {
            k
            for k in set(configs[name]) | set(configs["cifar"])
            if configs[name].get(k) != configs["cifar"].get(k)
        }
        assert changed <= {"model", "models", "weights", "also_max_pool"}, (
            name,
            changed,
        )
        models_of = configs[name].get("models", [configs[name].get("model")])
        assert len(models_of) == 1 and configs[name]["weights"] == "default"
        seen.update(models_of)
    assert seen == {"cifar_resnet18", "cifar_vgg11_bn"}, (paper, seen)
