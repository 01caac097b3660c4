"""Attribution normalisation (pure numpy) and the matplotlib figures."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from jaxattr import viz as V

# ----------------------------------------------------------------------------- normalize_attr

# channel-summed map of A below: [[1, -2], [3, -4]] (|.| total 10)
A = np.array([[[1.0, 0.0], [-1.0, -1.0]], [[2.0, 1.0], [-4.0, 0.0]]])


def test_reduce_channels():
    np.testing.assert_array_equal(V.reduce_channels(A, "sum"), [[1, -2], [3, -4]])
    np.testing.assert_array_equal(V.reduce_channels(A, "mean"), [[0.5, -1], [1.5, -2]])
    np.testing.assert_array_equal(V.reduce_channels(A, "abs_sum"), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(V.reduce_channels(A, "max_abs"), [[1, -1], [2, -4]])
    assert V.reduce_channels(A, None).shape == (2, 2, 2)
    np.testing.assert_array_equal(V.reduce_channels(A[None], "sum"), [[1, -2], [3, -4]])
    with pytest.raises(ValueError, match=r"reduction: expected one of .* got 'median'"):
        V.reduce_channels(A, "median")


def test_sign_handling_without_outliers():
    kw = {"outlier_perc": 0, "reduction": "sum"}
    np.testing.assert_allclose(
        V.normalize_attr(A, "all", **kw), [[0.25, -0.5], [0.75, -1.0]]
    )
    np.testing.assert_allclose(
        V.normalize_attr(A, "absolute_value", **kw), [[0.25, 0.5], [0.75, 1.0]]
    )
    np.testing.assert_allclose(
        V.normalize_attr(A, "positive", **kw), [[1 / 3, 0], [1, 0]]
    )
    np.testing.assert_allclose(
        V.normalize_attr(A, "negative", **kw), [[0, 0.5], [0, 1.0]]
    )
    out = V.normalize_attr(A, "all", **kw)
    assert out.dtype == np.float32 and out.shape == (2, 2)


def test_outlier_perc_mass_rule():
    # sorted |values| 1, 2, 3, 4; cumulative 1, 3, 6, 10.
    # outlier_perc=40 -> first cumulative >= 6 is at value 3, so the scale is 3.
    got = V.normalize_attr(A, "absolute_value", outlier_perc=40)
    np.testing.assert_allclose(got, [[1 / 3, 2 / 3], [1.0, 1.0]])
    assert V.attr_threshold(A, "absolute_value", outlier_perc=40) == 3.0
    # 2 % of the mass is below the largest value's share here: the scale stays 4
    assert V.attr_threshold(A, "absolute_value", outlier_perc=2) == 4.0
    # a single huge outlier is clipped instead of washing out everything else
    m = np.ones((10, 10))
    m[0, 0] = 1000.0
    out = V.normalize_attr(m, outlier_perc=50, reduction=None)
    assert out[0, 0] == 1.0 and out[5, 5] == pytest.approx(1 / 1000.0)
    out = V.normalize_attr(m, outlier_perc=95, reduction=None)
    assert out[5, 5] == 1.0


def test_outlier_perc_quantile_rule():
    m = np.arange(1, 101, dtype=float).reshape(10, 10)
    t = V.attr_threshold(m, reduction=None, outlier_perc=10, outlier_method="quantile")
    assert t == pytest.approx(np.percentile(np.arange(1, 101), 90))
    # mostly-zero map: the percentile is 0, so the maximum is used (no division by zero)
    sparse = np.zeros((10, 10))
    sparse[3, 4] = -2.0
    out = V.normalize_attr(sparse, "all", 2, None, outlier_method="quantile")
    assert out[3, 4] == -1.0 and np.count_nonzero(out) == 1


@pytest.mark.parametrize("sign", V.SIGNS)
@pytest.mark.parametrize("method", ["mass", "quantile"])
def test_all_zero_map_gives_zeros_without_warnings(sign, method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = V.normalize_attr(np.zeros((5, 6, 3)), sign, 2, outlier_method=method)
        assert V.attr_threshold(np.zeros((5, 6, 3)), sign) == 0.0
    assert out.shape == (5, 6) and not out.any() and np.isfinite(out).all()


def test_one_sided_map_with_the_other_sign_is_zero():
    pos = np.abs(A)
    assert not V.normalize_attr(pos, "negative").any()
    assert not V.normalize_attr(-pos, "positive").any()


def test_shared_vmax():
    small = A * 0.5
    v = V.shared_vmax([A, small], "absolute_value", outlier_perc=0)
    assert v == 4.0
    np.testing.assert_allclose(
        V.normalize_attr(small, vmax=v), [[0.125, 0.25], [0.375, 0.5]]
    )
    # without the shared scale the small map would fill the full range
    np.testing.assert_allclose(V.normalize_attr(small, outlier_perc=0).max(), 1.0)
    # values beyond vmax are clipped, vmax=0 gives zeros, a bad vmax is refused
    np.testing.assert_allclose(
        V.normalize_attr(A, "all", vmax=2.0), [[0.5, -1], [1, -1]]
    )
    assert not V.normalize_attr(A, vmax=0.0).any()
    with pytest.raises(
        ValueError, match=r"vmax: expected a finite number >= 0 or None, got -1"
    ):
        V.normalize_attr(A, vmax=-1)
    assert V.shared_vmax({"ig": A, "zero": np.zeros_like(A)}, outlier_perc=0) == 4.0
    with pytest.raises(ValueError, match="at least one"):
        V.shared_vmax([])


def test_normalize_argument_errors():
    with pytest.raises(ValueError, match=r"sign: expected one of .* got 'abs'"):
        V.normalize_attr(A, "abs")
    with pytest.raises(
        ValueError, match=r"outlier_perc: expected a number in \[0, 100\), got 100"
    ):
        V.normalize_attr(A, outlier_perc=100)
    with pytest.raises(
        ValueError, match=r"attr: expected finite values, got 1 NaN/inf"
    ):
        V.normalize_attr(np.array([[1.0, np.nan]]))
    with pytest.raises(
        ValueError, match=r"attr: expected a channels-last map .* got shape \(5,\)"
    ):
        V.normalize_attr(np.ones(5))
    with pytest.raises(ValueError, match="outlier_method"):
        V.normalize_attr(A, outlier_method="max")


def test_accepts_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    np.testing.assert_allclose(
        V.normalize_attr(jnp.asarray(A), "all", 0), V.normalize_attr(A, "all", 0)
    )


def test_pair_style_one_liners():
    m = np.arange(100, dtype=float).reshape(10, 10)
    g = V.visualize_image_grayscale(np.stack([m, -m], -1), percentile=100)
    np.testing.assert_allclose(g, m / 99.0, rtol=1e-6)
    d = V.visualize_image_diverging(np.stack([m - 50.0], -1), percentile=100)
    assert d[5, 0] == pytest.approx(0.5) and d[0, 0] == pytest.approx(0.0)
    assert d[9, 9] == pytest.approx(0.5 + 49 / 100)
    assert not V.visualize_image_grayscale(np.zeros((4, 4, 3))).any()
    np.testing.assert_array_equal(V.visualize_image_diverging(np.zeros((4, 4))), 0.5)


# ----------------------------------------------------------------------------- figures

pytest.importorskip("matplotlib")


def _image_and_attr(h=32, w=40):
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx / w, yy / h, 0.5 * np.ones((h, w))], -1).astype(np.float32)
    attr = np.zeros((h, w, 3), np.float32)
    attr[8:16, 10:20] = 1.0
    attr[20:28, 25:35] = -0.5
    return image, attr


def _png_ok(path):
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 50 and im.size[1] > 50
        px = np.asarray(im.convert("RGB"))
    assert px.std() > 5  # something was drawn


@pytest.mark.parametrize("method", V.METHODS)
@pytest.mark.parametrize("sign", ["absolute_value", "positive", "negative", "all"])
def test_visualize_image_attr_every_method_and_sign(tmp_path, method, sign):
    from matplotlib.figure import Figure

    image, attr = _image_and_attr()
    if sign == "all" and method in ("masked_image", "alpha_scaling"):
        with pytest.raises(ValueError, match="sign: method="):
            V.visualize_image_attr(attr, image, method=method, sign=sign)
        return
    fig, ax = V.visualize_image_attr(
        attr, image, method=method, sign=sign, show_colorbar=True, title=method
    )
    assert isinstance(fig, Figure) and ax.figure is fig
    assert len(ax.images) >= 1
    out = V.save_figure(fig, tmp_path / f"{method}-{sign}.png")
    _png_ok(out)


def test_heat_map_pixels_follow_the_normalised_map():
    image, attr = _image_and_attr()
    _fig, ax = V.visualize_image_attr(
        attr, method="heat_map", sign="positive", outlier_perc=0
    )
    shown = ax.images[-1].get_array()
    np.testing.assert_allclose(shown, V.normalize_attr(attr, "positive", 0))
    assert shown.max() == 1.0 and shown[24, 30] == 0.0
    _fig, ax = V.visualize_image_attr(
        attr, image, method="masked_image", sign="negative", outlier_perc=0
    )
    masked = ax.images[-1].get_array()
    np.testing.assert_allclose(masked[24, 30], image[24, 30])  # strongest negative kept
    np.testing.assert_allclose(masked[10, 12], 0.0)  # positive region masked out


def test_draws_on_a_given_axes_and_shares_vmax():
    from matplotlib.figure import Figure

    image, attr = _image_and_attr()
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    f1, a1 = V.visualize_image_attr(attr, image, "blended_heat_map", ax=ax1, vmax=6.0)
    f2, a2 = V.visualize_image_attr(
        attr * 0.5, image, "blended_heat_map", ax=ax2, vmax=6.0
    )
    assert f1 is fig and f2 is fig and a1 is ax1
    assert a1.images[-1].get_array().max() == pytest.approx(0.5)
    assert a2.images[-1].get_array().max() == pytest.approx(0.25)


def test_visualize_errors():
    image, attr = _image_and_attr()
    with pytest.raises(
        ValueError, match=r"image: method='blended_heat_map' needs the original"
    ):
        V.visualize_image_attr(attr, None, method="blended_heat_map")
    with pytest.raises(ValueError, match=r"method: expected one of .* got 'heatmap'"):
        V.visualize_image_attr(attr, image, method="heatmap")
    with pytest.raises(ValueError, match=r"image: expected spatial size \(32, 40\)"):
        V.visualize_image_attr(attr, image[:10], method="blended_heat_map")
    with pytest.raises(ValueError, match=r"image: expected float pixels in \[0, 1\]"):
        V.visualize_image_attr(attr, image * 255, method="original_image")
    with pytest.raises(ValueError, match="alpha_overlay"):
        V.visualize_image_attr(attr, image, method="blended_heat_map", alpha_overlay=2)


def test_all_zero_map_plots(tmp_path):
    image, _ = _image_and_attr()
    fig, _axes = V.explanation_figure(
        image, np.zeros_like(image), pred_label="x", prob=0.5
    )
    _png_ok(V.save_figure(fig, tmp_path / "zero.png"))
    fig, ax = V.visualize_image_attr(np.zeros((8, 8)), method="heat_map")
    assert not ax.images[-1].get_array().any()


def test_figure_grid_shared_scales(tmp_path):
    image, attr = _image_and_attr()
    images = np.stack([image, image[::-1]])
    attrs = {
        "big": np.stack([attr, attr]),
        "half": np.stack([attr, attr]) * 0.5,
        "zero": np.zeros((2,) + attr.shape),
    }
    fig, axes = V.figure_grid(
        images,
        attrs,
        method="heat_map",
        sign="absolute_value",
        outlier_perc=0,
        shared_scale="row",
        row_titles=["a", "b"],
    )
    assert axes.shape == (2, 4)
    assert [ax.get_title() for ax in axes[0]] == ["image", "big", "half", "zero"]
    maxima = [axes[0, j].images[-1].get_array().max() for j in (1, 2, 3)]
    assert maxima == pytest.approx([1.0, 0.5, 0.0])
    _png_ok(V.save_figure(fig, tmp_path / "grid.png"))
    fig, axes = V.figure_grid(
        images, attrs, method="heat_map", outlier_perc=0, shared_scale="none"
    )
    maxima = [axes[0, j].images[-1].get_array().max() for j in (1, 2, 3)]
    assert maxima == pytest.approx([1.0, 1.0, 0.0])
    fig, axes = V.figure_grid(
        list(images),
        {"m": [attr, attr * 3]},
        method="heat_map",
        outlier_perc=0,
        shared_scale="column",
    )
    assert axes[0, 1].images[-1].get_array().max() == pytest.approx(1 / 3)
    assert axes[1, 1].images[-1].get_array().max() == pytest.approx(1.0)
    fig, axes = V.figure_grid(
        list(images),
        {"m": [attr, attr * 3], "n": [attr * 6, attr]},
        method="heat_map",
        outlier_perc=0,
        shared_scale="all",
        sign="all",
    )
    assert axes[0, 1].images[-1].get_array().max() == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match=r"attrs_by_method\['m'\]: expected 2 maps"):
        V.figure_grid(images, {"m": attr[None]})
    with pytest.raises(ValueError, match="shared_scale"):
        V.figure_grid(images, attrs, shared_scale="rows")


def test_explanation_figure_contents(tmp_path):
    image, attr = _image_and_attr()
    fig, axes = V.explanation_figure(
        (image * 255).astype(np.uint8),
        attr,
        title="cat.jpg",
        pred_label="tiger_cat (282)",
        prob=0.3912,
        true_label="tiger_cat",
        method_name="integrated_gradients",
        note="n_steps=64 delta=1e-3",
    )
    assert len(axes) == 3
    assert "predicted: tiger_cat (282) (p = 0.391)" in fig._suptitle.get_text()
    assert "cat.jpg" in fig._suptitle.get_text()
    assert axes[0].get_title() == "input (true: tiger_cat)"
    assert axes[1].get_title().startswith("integrated_gradients")
    texts = [t.get_text() for t in fig.texts]
    assert "n_steps=64 delta=1e-3" in texts
    path = V.save_figure(fig, tmp_path / "expl.png", dpi=80)
    _png_ok(path)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind
    with pytest.raises(
        ValueError, match=r"prob: expected a probability in \[0, 1\], got 1.5"
    ):
        V.explanation_figure(image, attr, prob=1.5)


def test_save_figure_is_atomic(tmp_path):
    _image, attr = _image_and_attr()
    fig, _ = V.visualize_image_attr(attr)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        V.save_figure(fig, tmp_path / "missing_dir" / "x.png")
    target = tmp_path / "x.png"
    target.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    fig.savefig = boom
    with pytest.raises(RuntimeError, match="disk full"):
        V.save_figure(fig, target)
    assert target.read_bytes() == b"old"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_pyplot_mode_is_headless_safe(tmp_path):
    image, attr = _image_and_attr()
    fig, _ax = V.visualize_image_attr(attr, image, "blended_heat_map", use_pyplot=True)
    import matplotlib
    import matplotlib.pyplot as plt

    assert plt.fignum_exists(fig.number)
    V.save_figure(fig, tmp_path / "p.png")
    assert not plt.fignum_exists(fig.number)  # closed after saving
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "MPLBACKEND" not in os.environ:
        assert matplotlib.get_backend().lower() == "agg"
