"""run(): resume after a kill gives the uninterrupted rows bit for bit, computes nothing twice."""

from __future__ import annotations

import numpy as np
import pytest

from jaxattr.runs import Example, ResultStore, pair_key, run
from tests.runs import common
from tests.runs.common import Calls, comparable, make_examples, tiny_experiment

CONFIG = {"model": "tiny", "steps": 16}


def _interrupting(items, after: int):
    """Yield ``after`` items, then raise KeyboardInterrupt (a kill between images)."""
    for i, ex in enumerate(items):
        if i == after:
            raise KeyboardInterrupt
        yield ex


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its rows and execution counts."""
    calls = Calls()
    store = ResultStore(tmp_path_factory.mktemp("ref") / "r.db", "tiny", CONFIG)
    summary = run(tiny_experiment(), make_examples(5, wrong=(3,)), store, seed=7,
                  progress=False)  # fmt: skip
    return store.rows(), calls.now(), summary, store


def test_uninterrupted_run_counts(reference):
    rows, calls, summary, store = reference
    # 5 images, image 3 misclassified: 4 images x 2 methods x 3 metrics.
    assert len(rows) == 4 * 2 * 3
    assert calls == {"grad_x_input": 4, "noisy_saliency": 4}
    assert summary.computed == 8 and summary.skipped == 1 and summary.reused == 0
    assert store.skipped() == {"img/03.png"}
    assert all(r["label"] == r["predicted"] for r in rows)
    assert {r["metric"]: r["curve"] is None for r in rows} == {
        "deletion": False, "insertion": False, "noise": True}  # fmt: skip


@pytest.mark.parametrize("after", [1, 3])
def test_kill_between_images_and_resume(tmp_path, reference, capsys, after):
    ref_rows, _, _, _ = reference
    calls = Calls()
    exp = tiny_experiment()
    store = ResultStore(tmp_path / "r.db", "tiny", CONFIG)
    with pytest.raises(KeyboardInterrupt):
        run(exp, _interrupting(make_examples(5, wrong=(3,)), after), store, seed=7)
    assert "resume" in capsys.readouterr().err
    first = calls.now()
    n_correct_before = sum(1 for i in range(after) if i != 3)
    assert first == {
        "grad_x_input": n_correct_before,
        "noisy_saliency": n_correct_before,
    }
    assert len(store.rows()) == n_correct_before * 6

    # Restart in a fresh process-like state: a new store object on the same file.
    store2 = ResultStore(tmp_path / "r.db", "tiny", CONFIG)
    summary = run(tiny_experiment(), make_examples(5, wrong=(3,)), store2, seed=7,
                  progress=False)  # fmt: skip
    assert summary.reused == 2 * n_correct_before
    assert calls.now() == {
        "grad_x_input": 4,
        "noisy_saliency": 4,
    }  # nothing computed twice
    rows = store2.rows()
    assert comparable(rows) == comparable(ref_rows)  # bit for bit, no duplicates
    assert len({(r["image_id"], r["method"], r["metric"]) for r in rows}) == len(rows)


def test_kill_inside_an_image_keeps_finished_methods(tmp_path, reference, monkeypatch):
    """Interrupted before the 2nd method of image 1 is written: its 1st method is kept."""
    ref_rows, _, _, _ = reference
    store = ResultStore(tmp_path / "r.db", "tiny", CONFIG)
    real_add, n = store.add, [0]

    def add(*a, **k):
        n[0] += 1
        if n[0] == 4:  # image 0: 2 pairs, image 1: 1st pair written, 2nd interrupted
            raise KeyboardInterrupt
        return real_add(*a, **k)

    monkeypatch.setattr(store, "add", add)
    with pytest.raises(KeyboardInterrupt):
        run(
            tiny_experiment(),
            make_examples(5, wrong=(3,)),
            store,
            seed=7,
            progress=False,
        )
    assert store.done() == {("img/00.png", "grad_x_input"), ("img/00.png", "noisy_saliency"),
                            ("img/01.png", "grad_x_input")}  # fmt: skip
    monkeypatch.undo()
    calls = Calls()
    store2 = ResultStore(tmp_path / "r.db", "tiny", CONFIG)
    run(tiny_experiment(), make_examples(5, wrong=(3,)), store2, seed=7, progress=False)
    # images 2, 4 for the first method; 1, 2, 4 for the second
    assert calls.now() == {"grad_x_input": 2, "noisy_saliency": 3}
    assert comparable(store2.rows()) == comparable(ref_rows)


def test_second_run_recomputes_nothing_and_skips_stay_skipped(reference):
    _, _, _, store = reference
    calls = Calls()
    summary = run(tiny_experiment(), make_examples(5, wrong=(3,)), store, seed=7,
                  progress=False)  # fmt: skip
    assert calls.now() == {} and summary.computed == 0 and summary.skipped == 0
    assert summary.reused == 8 and summary.done == 8


def test_only_correct_false_evaluates_misclassified(tmp_path):
    store = ResultStore(tmp_path / "r.db", "tiny", CONFIG)
    run(
        tiny_experiment(only_correct=False),
        make_examples(2, wrong=(1,)),
        store,
        progress=False,
    )
    rows = [r for r in store.rows() if r["image_id"] == "img/01.png"]
    assert len(rows) == 6 and rows[0]["label"] != rows[0]["predicted"]
    assert store.skipped() == set()


def test_metric_failure_leaves_no_partial_rows(tmp_path):
    """A metric that fails on the 2nd image: image 1's rows land, image 2 has none."""
    import jax

    exp = tiny_experiment()
    seen = [0]

    def failing(model_fn, x, a, target, key):
        def check():
            seen[0] += 1
            if seen[0] == 3:  # 2nd image, 1st method
                raise RuntimeError("metric broke")

        jax.debug.callback(check)
        return a.sum(), None

    exp = exp._replace(metrics={**exp.metrics, "failing": failing})
    store = ResultStore(tmp_path / "r.db", "tiny", CONFIG)
    with pytest.raises(Exception, match="metric broke"):
        run(exp, make_examples(3), store, progress=False)
    ids = {(r["image_id"], r["method"]) for r in store.rows()}
    assert ids == {("img/00.png", "grad_x_input"), ("img/00.png", "noisy_saliency")}
    assert store.done() == ids


def test_keys_depend_on_seed_image_and_method():
    import jax

    k = lambda *a: np.asarray(jax.random.key_data(pair_key(*a)))
    assert np.array_equal(k(0, "a", "m"), k(0, "a", "m"))
    assert not np.array_equal(k(0, "a", "m"), k(1, "a", "m"))
    assert not np.array_equal(k(0, "a", "m"), k(0, "b", "m"))
    assert not np.array_equal(k(0, "a", "m"), k(0, "a", "n"))


def test_seed_changes_random_rows(tmp_path, reference):
    ref_rows, _, _, _ = reference
    store = ResultStore(tmp_path / "r.db", "tiny", CONFIG)
    run(tiny_experiment(), make_examples(5, wrong=(3,)), store, seed=8, progress=False)
    noisy = lambda rows: [r["value"] for r in sorted(rows, key=lambda r: r["image_id"])
                          if r["metric"] == "noise"]  # fmt: skip
    assert noisy(store.rows()) != noisy(ref_rows)


def test_maps_kept_for_first_images(tmp_path):
    store = ResultStore(tmp_path / "r.db", "tiny", CONFIG)
    exp = tiny_experiment(keep_maps=2)
    run(exp, make_examples(4, wrong=(0,)), store, progress=False)
    maps = store.maps()
    assert list(maps) == [
        "img/01.png",
        "img/02.png",
    ]  # the skipped image 0 does not count
    assert set(maps["img/01.png"]) == {"grad_x_input", "noisy_saliency"}
    heat = maps["img/01.png"]["grad_x_input"]
    assert heat.shape == (8, 8) and heat.dtype == np.float32
    assert store.get_image("img/01.png").shape == (8, 8, 3)


def test_errors_name_the_argument(tmp_path):
    store = ResultStore(tmp_path / "r.db", "tiny", CONFIG)
    with pytest.raises(TypeError, match="experiment"):
        run({"name": "x"}, [], store)
    ex = make_examples(1)
    with pytest.raises(ValueError, match="appears twice"):
        run(tiny_experiment(), ex + ex, store, progress=False)


def test_progress_on_stderr(tmp_path, capsys):
    store = ResultStore(tmp_path / "r.db", "tiny", CONFIG)
    run(tiny_experiment(), make_examples(3, wrong=(1,)), store, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[1/3] img/00.png grad_x_input"
    assert err[1].startswith("[1/3] img/00.png noisy_saliency  ETA ")
    assert err[2] == "[2/3] img/01.png skipped (label 2, predicted 1)"
    assert err[-1].startswith("done: 3 images, 4 pairs computed, 0 reused, 1 skipped")
    run(tiny_experiment(), iter(make_examples(1)), store, progress=False)
    assert capsys.readouterr().err == ""


def deletion_again(model_fn, x, a, target, key):
    """Another function with deletion's program (the runner shares it)."""
    return common.deletion(model_fn, x, a, target, key)


def test_metrics_with_one_program_are_computed_once_with_identical_rows(
    tmp_path, capsys
):
    metrics = {**common.METRICS, "deletion_again": deletion_again}
    metrics["noise_again"] = common.noise  # uses its key: computed for each name
    exp = tiny_experiment()._replace(metrics=metrics)
    out = {}
    for share in (False, True):
        store = ResultStore(tmp_path / f"{share}.db", "tiny", CONFIG)
        run(exp, make_examples(3), store, seed=7, share_metrics=share)
        out[share] = store.rows()
    err = capsys.readouterr().err
    assert "same program, computed once: deletion_again = deletion\n" in err
    assert comparable(out[True]) == comparable(out[False])
    by = {(r["image_id"], r["method"], r["metric"]): r for r in out[True]}
    for (image, method, metric), r in by.items():
        if metric == "deletion_again":
            assert r["value"] == by[image, method, "deletion"]["value"]
        if metric == "noise_again":  # another key: another value, not a copy
            assert r["value"] != by[image, method, "noise"]["value"]


def test_dga_morf_and_deletion_share_one_curve():
    """DGA's MoRF and RISE deletion (normalised-zero substrate, one step) are one
    program, LeRF and insertion are others, for a pixel map and an [H, W] map; a
    deletion with another substrate is not the same program."""
    import jax.numpy as jnp

    from experiments import _common as c
    from experiments import load
    from jaxattr.runs.runner import _same_metrics

    cfg = load("dga").CONFIGS["debug"]
    exp = load("dga").build(cfg)
    x = jnp.asarray(make_examples(1)[0].image).repeat(4, 0).repeat(4, 1)
    assert x.shape == (cfg["size"], cfg["size"], 3)
    key = pair_key(0, "a", "b")
    for a in (x * 0.5 - 0.1, x[..., 0]):
        args = (exp.model.fn, x, a, jnp.int32(1))
        assert _same_metrics(exp.metrics, args, key) == {"deletion": "morf"}
    other = c.perturbation(
        "deletion", mean=(0.0, 0.0, 0.0), step=cfg["step"], batch_size=16
    )
    metrics = {**exp.metrics, "deletion": other}
    assert _same_metrics(metrics, args, key) == {}


def test_dga_rows_identical_with_and_without_sharing(tmp_path):
    """DGA's four metrics (debug config) on the tiny model: MoRF's curve is stored
    under deletion too, and every row equals the one computed without sharing."""
    from experiments import load

    cfg = load("dga").CONFIGS["debug"]
    exp = load("dga").build(cfg)
    exp = exp._replace(model=common.MODEL, methods={"gxi": common.grad_x_input})
    images = [
        Example(e.id, np.asarray(e.image).repeat(4, 0).repeat(4, 1), None)
        for e in make_examples(2)
    ]
    rows = {}
    for share in (False, True):
        store = ResultStore(tmp_path / f"{share}.db", "dga", cfg)
        run(exp, images, store, progress=False, share_metrics=share)
        rows[share] = store.rows()
    assert len(rows[True]) == 2 * 4
    assert comparable(rows[True]) == comparable(rows[False])
