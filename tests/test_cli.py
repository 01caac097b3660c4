"""`jaxattr explain`, end to end on small inputs."""

import csv
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

import jaxattr
from jaxattr import cli, models, registry, runs
from jaxattr.models import weights

FAST = [
    "--model",
    "cifar_resnet20",
    "--weights",
    "random",
    "--n-steps",
    "4",
    "--batch-size",
    "2",
]


@pytest.fixture(autouse=True)
def resnet8(monkeypatch):
    """`--model cifar_resnet20 --weights random` (FAST) builds a ResNet-8 here (one
    block per stage): these tests check the command's plumbing, and the smaller network
    compiles in about two thirds of the time."""
    load = models.load

    def small(name, weights="default", **kwargs):
        if name == "cifar_resnet20" and weights == "random":
            kwargs.setdefault("blocks_per_stage", 1)
        return load(name, weights, **kwargs)

    monkeypatch.setattr(models, "load", small)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            folder / name
        )
    return folder


def read_rows(out):
    with open(out / "results.csv") as fh:
        return list(csv.DictReader(fh))


def test_explain_writes_figures_and_rows_then_resumes(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["explain", str(photos), "--out", str(out), *FAST]) == 0
    rows = read_rows(out)
    assert [r["file"].split("/")[-1] for r in rows] == ["a.png", "b.jpg"]
    for r in rows:
        assert (out / r["figure"]).stat().st_size > 0
        assert 0 <= int(r["predicted_index"]) < 10
        assert 0 < float(r["probability"]) <= 1
        assert np.isfinite(float(r["delta"]))
        assert r["n_steps"] == "4" and r["rule"] == "gausslegendre"
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    assert (
        json.loads((out / "results.jsonl").read_text().splitlines()[0])["file"]
        == rows[0]["file"]
    )
    # A second run with the same settings finds everything done.
    assert cli.main(["explain", str(photos), "--out", str(out), *FAST]) == 0
    assert len(read_rows(out)) == 2
    assert "2 of 2 images already done" in capsys.readouterr().err
    # The store, not the table, says what is done: the tables are written from it.
    (out / "results.csv").unlink()
    assert cli.main(["explain", str(photos), "--out", str(out), *FAST]) == 0
    assert "2 of 2 images already done" in capsys.readouterr().err
    assert len(read_rows(out)) == 2
    (run,) = runs.list_runs(out / "results.db")
    assert run["experiment"] == "explain" and run["pairs"] == 2
    # Changed settings are new rows.
    assert (
        cli.main(
            [
                "explain",
                str(photos / "a.png"),
                "--out",
                str(out),
                "--method",
                "saliency",
                *FAST,
            ]
        )
        == 0
    )
    assert [r["method"] for r in read_rows(out)] == ["integrated_gradients"] * 2 + [
        "saliency"
    ]


def test_same_stem_and_other_methods_get_their_own_figures(photos, tmp_path):
    """`a.png` in two folders, explained by two methods into one `--out`: four rows,
    four figures, none overwritten."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.png").write_bytes((photos / "a.png").read_bytes())
    out = tmp_path / "out"
    for method in ("integrated_gradients", "saliency"):
        argv = [
            "explain",
            str(photos / "a.png"),
            str(other / "a.png"),
            "--out",
            str(out),
        ]
        assert cli.main([*argv, *FAST, "--method", method]) == 0
    rows = read_rows(out)
    figures = [r["figure"] for r in rows]
    assert len(rows) == 4 and len(set(figures)) == 4, figures
    for r in rows:
        assert r["figure"].startswith(f"a-{r['method']}-")
        assert (out / r["figure"]).stat().st_size > 0
    assert sorted(p.name for p in out.glob("*.png")) == sorted(figures)


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, photos, capsys):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    cases = [
        [str(tmp_path / "missing.png")],
        [str(corrupt)],
        [str(photos), str(corrupt)],
        [str(photos), "--target", "10"],
        [str(photos), "--target", "cat"],
        [str(photos), "--n-steps", "0"],
    ]
    for i, extra in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert cli.main(["explain", "--out", str(out), *FAST, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("jaxattr explain: error:") and "\n" not in err, err
        assert not out.exists()
    assert (
        cli.main(["explain", "--out", str(tmp_path / "o"), "--model", "resnet7"]) == 2
    )
    assert "known names" in capsys.readouterr().err


@pytest.mark.parametrize(
    "method", [m for m in cli.METHODS if m != "integrated_gradients"]
)
def test_every_method_runs(method, photos, tmp_path):
    out = tmp_path / "out"
    extra = ["--nt-samples", "2", "--max-iterations", "1", "--no-figures"]
    argv = ["explain", str(photos / "a.png"), "--out", str(out), "--method", method]
    assert cli.main([*argv, *FAST, *extra]) == 0
    (row,) = read_rows(out)
    assert row["method"] == method and 0 <= int(row["predicted_index"]) < 10


def test_a_method_refusing_the_settings_is_a_one_line_error(photos, tmp_path, capsys):
    argv = ["explain", str(photos), "--out", str(tmp_path / "o"), *FAST]
    code = cli.main(
        [*argv, "--method", "distilled_gradient_aggregation", "--output", "softmax"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "jaxattr explain: error: --method distilled_gradient_aggregation"
    )
    assert "\n" not in err and not (tmp_path / "o").exists()


def test_model_methods_refuse_another_output(photos, tmp_path, capsys):
    argv = ["explain", str(photos), "--out", str(tmp_path / "o"), *FAST]
    argv += ["--method", "full_gradients", "--output", "softmax"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxattr explain: error: --output softmax: full_gradients")
    assert not (tmp_path / "o").exists()


def test_split_options_are_recorded(photos, tmp_path):
    out = tmp_path / "out"
    argv = ["explain", str(photos / "a.png"), "--out", str(out), "--no-figures"]
    argv += ["--method", "split_integrated_gradients", "--split", "idg", *FAST]
    assert cli.main(argv) == 0
    (row,) = read_rows(out)
    assert row["baseline"] == "black; idg split, left part"


def test_the_methods_are_the_registry_under_their_python_names():
    assert cli.METHODS is registry.METHODS
    for entry in cli.METHODS.values():
        assert hasattr(jaxattr, entry.function)
        if entry.function != "noise_tunnel":
            assert entry.name == entry.function
    assert "adaptive_integrated_gradients" in cli.METHODS
    assert "fullgrad" not in cli.METHODS


def test_old_method_name_still_works_with_a_note(photos, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["explain", str(photos / "a.png"), "--out", str(out), "--no-figures"]
    assert cli.main([*argv, *FAST, "--method", "fullgrad"]) == 0
    assert "--method fullgrad is deprecated; use full_gradients" in (
        capsys.readouterr().err
    )
    (row,) = read_rows(out)
    assert row["method"] == "full_gradients"


def test_version_model_list_and_help(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == jaxattr.__version__
    assert cli.main(["explain", "--model", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(models.MODELS)
    by_name = {ln.split()[0]: ln for ln in lines}
    assert models.MODELS["resnet18"].default_weights in by_name["resnet18"]
    assert "package" in by_name["efficientnet_lite0"]
    with pytest.raises(SystemExit):
        cli.main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    # every method once, in the --method help; the step defaults shown
    for name in cli.METHODS:
        assert text.count(name) >= 1, name
    assert "integrated_gradients 64" in text and "(default: gausslegendre)" in text


def test_offline_download_names_the_url_and_the_way_round(
    tmp_path, capsys, monkeypatch
):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(weights, "default_cache_dir", lambda: tmp_path / "cache")
    argv = ["explain", "--out", str(tmp_path / "o"), "--model", "cifar_resnet20"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert models.MODELS["cifar_resnet20"].default_weights in err
    assert "no network" in err and "--weights PATH" in err
    assert not (tmp_path / "o").exists()
