"""Attribution plots in Captum's vocabulary (matplotlib, imported lazily: ``jaxattr[viz]``).

Layout is channels-last everywhere: images ``[H, W, 3]`` (float in [0, 1] or uint8),
attributions ``[H, W, C]`` or ``[H, W]`` (a leading batch axis of size 1 is accepted).

* ``method``: ``"heat_map"``, ``"blended_heat_map"`` (heat map over the grey image),
  ``"masked_image"`` (image times the normalised map), ``"alpha_scaling"`` (the map as the
  image's alpha channel), ``"original_image"``.
* ``sign``: ``"absolute_value"`` (|a|, scale [0, 1]), ``"positive"`` (a > 0, [0, 1]),
  ``"negative"`` (a < 0, shown as magnitudes in [0, 1]), ``"all"`` (signed, [-1, 1]).
* ``outlier_perc``: the top ``outlier_perc`` percent is clipped to the end of the colour scale.
  By default (``outlier_method="mass"``, Captum's rule) the scale is the smallest value at which
  the sorted magnitudes accumulate ``100 - outlier_perc`` percent of the total; with
  ``"quantile"`` it is the plain ``100 - outlier_perc`` percentile of the magnitudes (PAIR).
* ``vmax``: a fixed scale (in attribution units) instead of the per-map one, so that several
  maps share one colour scale; :func:`shared_vmax` computes one for a set of maps.

All-zero maps (or ``vmax=0``) normalise to zeros without warnings or NaN.  Figures are built
with ``matplotlib.figure.Figure`` (no pyplot state, works headless with the Agg canvas)
unless ``use_pyplot=True``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxattr import reductions as _reductions

__all__ = [
    "METHODS",
    "REDUCTIONS",
    "SIGNS",
    "attr_threshold",
    "explanation_figure",
    "figure_grid",
    "normalize_attr",
    "reduce_channels",
    "save_figure",
    "shared_vmax",
    "text_color",
    "text_html",
    "visualize_feature_attr",
    "visualize_image_attr",
    "visualize_image_diverging",
    "visualize_image_grayscale",
    "visualize_text",
]

METHODS = (
    "heat_map",
    "blended_heat_map",
    "masked_image",
    "alpha_scaling",
    "original_image",
)
SIGNS = ("absolute_value", "positive", "negative", "all")
#: Names accepted by ``reduction=`` (see :mod:`jaxattr.reductions`); ``None`` keeps channels.
REDUCTIONS = (*_reductions.REDUCTIONS, None)
OUTLIER_METHODS = ("mass", "quantile")


# ----------------------------------------------------------------------------- numpy part


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def _as_attr(attr) -> np.ndarray:
    a = np.asarray(attr)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim not in (2, 3):
        raise ValueError(
            f"attr: expected a channels-last map [H, W] or [H, W, C] (or [1, H, W, C]), "
            f"got shape {a.shape}"
        )
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(
        a.dtype, np.complexfloating
    ):
        raise ValueError(f"attr: expected real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ValueError(f"attr: expected finite values, got {bad} NaN/inf entries")
    return a


#: viz's former meanings of two names that mean something else in
#: `jaxattr.reductions` (and `jaxattr.metrics`): kept, with a DeprecationWarning, until
#: the names take the shared meaning here too.
_DEPRECATED_MEANINGS = {
    "abs_sum": ("sum_abs", "sum_c |A|", "|sum_c A|"),
    "max_abs": ("signed_max_abs", "the signed value of largest magnitude", "max_c |A|"),
}


def reduce_channels(attr, reduction: str | None = "sum") -> np.ndarray:
    """``[H, W, C] -> [H, W]`` by a name of :data:`jaxattr.reductions.REDUCTIONS`
    (``"sum"``, ``"mean"``, ``"sum_abs"``, ``"signed_max_abs"``, ...); ``None`` or a 2-D
    map returns it unchanged.

    Deprecated: ``"abs_sum"`` and ``"max_abs"`` keep their former meaning here
    (``"sum_abs"`` and ``"signed_max_abs"``) with a ``DeprecationWarning``; they will
    mean ``|sum_c A|`` and ``max_c |A|`` as everywhere else.
    """
    _check_choice("reduction", reduction, REDUCTIONS)
    a = _as_attr(attr)
    if reduction in _DEPRECATED_MEANINGS:
        name, here, there = _DEPRECATED_MEANINGS[reduction]
        warnings.warn(
            f"jaxattr.viz: reduction={reduction!r} means {here} in viz but {there} in"
            f" jaxattr.reductions and jaxattr.metrics; pass reduction={name!r} for the"
            f" same map. {reduction!r} will mean {there} in viz too.",
            DeprecationWarning,
            stacklevel=2,
        )
        reduction = name
    if reduction is None or a.ndim == 2:
        return a
    return _reductions.reduce(a, reduction)


def _signed_part(a: np.ndarray, sign: str) -> np.ndarray:
    """The values the scale is computed on: magnitudes >= 0 for every sign."""
    if sign == "positive":
        return np.where(a > 0, a, 0.0)
    if sign == "negative":
        return np.where(a < 0, -a, 0.0)
    return np.abs(a)


def _threshold_of(mags: np.ndarray, outlier_perc: float, outlier_method: str) -> float:
    flat = np.sort(mags.ravel())
    if flat.size == 0 or flat[-1] <= 0:
        return 0.0
    if outlier_method == "quantile":
        t = float(np.percentile(flat, 100.0 - outlier_perc))
        return t if t > 0 else float(flat[-1])  # sparse maps: fall back to the maximum
    cum = np.cumsum(flat)
    idx = int(
        np.searchsorted(cum, cum[-1] * (100.0 - outlier_perc) / 100.0, side="left")
    )
    return float(flat[min(idx, flat.size - 1)])


def _check_outlier(outlier_perc, outlier_method):
    _check_choice("outlier_method", outlier_method, OUTLIER_METHODS)
    if not (
        isinstance(outlier_perc, (int, float, np.number)) and 0 <= outlier_perc < 100
    ):
        raise ValueError(
            f"outlier_perc: expected a number in [0, 100), got {outlier_perc!r}"
        )


def attr_threshold(
    attr,
    sign: str = "absolute_value",
    outlier_perc: float = 2,
    reduction: str | None = "sum",
    *,
    outlier_method: str = "mass",
) -> float:
    """The colour-scale end (attribution units, >= 0) that :func:`normalize_attr` divides by.

    Returns 0.0 when the selected part of the map is all zero.
    """
    _check_choice("sign", sign, SIGNS)
    _check_outlier(outlier_perc, outlier_method)
    a = reduce_channels(attr, reduction)
    return _threshold_of(_signed_part(a, sign), float(outlier_perc), outlier_method)


def shared_vmax(
    attrs: Sequence,
    sign: str = "absolute_value",
    outlier_perc: float = 2,
    reduction: str | None = "sum",
    *,
    outlier_method: str = "mass",
) -> float:
    """One scale for several maps: the threshold of all their values pooled together."""
    maps = list(attrs.values()) if isinstance(attrs, Mapping) else list(attrs)
    if not maps:
        raise ValueError("attrs: expected at least one attribution map, got none")
    _check_choice("sign", sign, SIGNS)
    _check_outlier(outlier_perc, outlier_method)
    pooled = np.concatenate(
        [_signed_part(reduce_channels(m, reduction), sign).ravel() for m in maps]
    )
    return _threshold_of(pooled, float(outlier_perc), outlier_method)


def normalize_attr(
    attr,
    sign: str = "absolute_value",
    outlier_perc: float = 2,
    reduction: str | None = "sum",
    vmax: float | None = None,
    *,
    outlier_method: str = "mass",
) -> np.ndarray:
    """Scale an attribution map for display.

    ``attr``: ``[H, W, C]`` / ``[H, W]``; channels are first reduced by ``reduction``.
    Returns float32 ``[H, W]`` (``[H, W, C]`` with ``reduction=None``): values in [0, 1]
    for ``absolute_value`` / ``positive`` / ``negative`` (negative attributions appear as
    positive magnitudes), in [-1, 1] for ``all``.  The scale is ``vmax`` when given, else
    :func:`attr_threshold`; values beyond it are clipped.  A zero scale gives zeros.
    """
    _check_choice("sign", sign, SIGNS)
    _check_outlier(outlier_perc, outlier_method)
    a = reduce_channels(attr, reduction)
    mags = _signed_part(a, sign)
    if vmax is None:
        scale = _threshold_of(mags, float(outlier_perc), outlier_method)
    else:
        if not (
            isinstance(vmax, (int, float, np.number))
            and np.isfinite(vmax)
            and vmax >= 0
        ):
            raise ValueError(
                f"vmax: expected a finite number >= 0 or None, got {vmax!r}"
            )
        scale = float(vmax)
    if scale <= 0:
        return np.zeros(a.shape, np.float32)
    if sign == "all":
        return np.clip(a / scale, -1.0, 1.0).astype(np.float32)
    return np.clip(mags / scale, 0.0, 1.0).astype(np.float32)


def visualize_image_grayscale(attr, percentile: float = 99) -> np.ndarray:
    """PAIR-style grey map: ``sum |a|`` over channels scaled to [0, 1] between its minimum
    and its ``percentile``; ``[H, W(, C)] -> float32 [H, W]``.  All-constant maps give zeros."""
    if not (0 < percentile <= 100):
        raise ValueError(
            f"percentile: expected a number in (0, 100], got {percentile!r}"
        )
    m = np.abs(reduce_channels(attr, "sum_abs"))  # a 2-D map is returned as is
    hi, lo = float(np.percentile(m, percentile)), float(m.min())
    if hi <= lo:
        return np.zeros(m.shape, np.float32)
    return np.clip((m - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def visualize_image_diverging(attr, percentile: float = 99) -> np.ndarray:
    """PAIR-style diverging map: channel sum scaled so that 0 -> 0.5 and
    +-(``percentile`` of |sum|) -> 1 / 0; ``[H, W(, C)] -> float32 [H, W]`` in [0, 1]."""
    if not (0 < percentile <= 100):
        raise ValueError(
            f"percentile: expected a number in (0, 100], got {percentile!r}"
        )
    m = reduce_channels(attr, "sum")
    span = float(np.percentile(np.abs(m), percentile))
    if span <= 0:
        return np.full(m.shape, 0.5, np.float32)
    return np.clip(0.5 + m / (2.0 * span), 0.0, 1.0).astype(np.float32)


def _as_image(
    image, hw: tuple[int, int] | None = None, name: str = "image"
) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3):
        raise ValueError(
            f"{name}: expected a channels-last image [H, W], [H, W, 1] or [H, W, 3], "
            f"got shape {img.shape}"
        )
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    else:
        img = img.astype(np.float32)
        if img.size and (img.min() < -1e-3 or img.max() > 1 + 1e-3):
            raise ValueError(
                f"{name}: expected float pixels in [0, 1] (or uint8), got range "
                f"[{img.min():.4g}, {img.max():.4g}]; pass the un-normalised image"
            )
        img = np.clip(img, 0.0, 1.0)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    if hw is not None and img.shape[:2] != tuple(hw):
        raise ValueError(
            f"{name}: expected spatial size {tuple(hw)} to match attr, got {img.shape[:2]}"
        )
    return img


# ----------------------------------------------------------------------------- matplotlib part


def _mpl():
    """Import matplotlib lazily; choose the Agg backend when there is no display."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "jaxattr.viz needs matplotlib: `pip install 'jaxattr[viz]'` (or `pip install matplotlib`)"
        ) from err
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if (
        headless
        and "MPLBACKEND" not in os.environ
        and "matplotlib.pyplot" not in sys.modules
    ):
        matplotlib.use("Agg")
    return matplotlib


def _new_figure(figsize, nrows=1, ncols=1, use_pyplot=False, **kw):
    mpl = _mpl()
    if use_pyplot:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, **kw)
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    del mpl
    return fig, axes


def _default_cmap(sign: str):
    mpl = _mpl()
    if sign == "all":
        from matplotlib.colors import LinearSegmentedColormap

        return LinearSegmentedColormap.from_list(
            "jaxattr_rwg", ["red", "white", "green"]
        )
    name = {"positive": "Greens", "negative": "Reds", "absolute_value": "Blues"}[sign]
    return mpl.colormaps[name]


def _scale_limits(sign: str) -> tuple[float, float]:
    return (-1.0, 1.0) if sign == "all" else (0.0, 1.0)


def _draw(
    ax,
    attr,
    image,
    method,
    sign,
    outlier_perc,
    alpha_overlay,
    cmap,
    vmax,
    reduction,
    outlier_method,
):
    """Draw one panel on ``ax``; returns the heat-map AxesImage (or None)."""
    _check_choice("method", method, METHODS)
    _check_choice("sign", sign, SIGNS)
    if not (0.0 <= float(alpha_overlay) <= 1.0):
        raise ValueError(
            f"alpha_overlay: expected a number in [0, 1], got {alpha_overlay!r}"
        )
    a = _as_attr(attr)
    hw = a.shape[:2]
    if method != "heat_map" and image is None:
        raise ValueError(f"image: method={method!r} needs the original image, got None")
    img = None if image is None else _as_image(image, hw)
    ax.set_xticks([])
    ax.set_yticks([])
    if method == "original_image":
        ax.imshow(img)
        return None
    if method in ("masked_image", "alpha_scaling") and sign == "all":
        raise ValueError(
            f"sign: method={method!r} needs a non-negative map, so sign must be one of "
            f"{[s for s in SIGNS if s != 'all']}, got 'all'"
        )
    norm = normalize_attr(
        a, sign, outlier_perc, reduction, vmax, outlier_method=outlier_method
    )
    if norm.ndim == 3:
        raise ValueError(
            "reduction: plotting needs a 2-D map, so reduction must not be None"
        )
    cmap = _default_cmap(sign) if cmap is None else cmap
    lo, hi = _scale_limits(sign)
    if method == "heat_map":
        return ax.imshow(norm, cmap=cmap, vmin=lo, vmax=hi)
    if method == "blended_heat_map":
        ax.imshow(img.mean(axis=-1), cmap="gray", vmin=0.0, vmax=1.0)
        return ax.imshow(norm, cmap=cmap, vmin=lo, vmax=hi, alpha=float(alpha_overlay))
    if method == "masked_image":
        ax.imshow(img * norm[..., None])
        return None
    ax.imshow(np.concatenate([img, norm[..., None]], axis=-1))  # alpha_scaling
    return None


def _colorbar(fig, ax, mappable, sign, scale):
    """Colour bar labelled in attribution units when ``scale`` (the vmax) is known."""
    from matplotlib.ticker import FuncFormatter

    cax = ax.inset_axes([1.03, 0.0, 0.05, 1.0])
    cb = fig.colorbar(mappable, cax=cax)
    if scale is not None and scale > 0:
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * scale:.3g}"))
    lo, hi = _scale_limits(sign)
    cb.set_ticks([lo, (lo + hi) / 2, hi])
    return cb


def _overlay(ax, img, norm, cmap, sign, alpha_overlay):
    """Dimmed grey photo with the heat map on top, each pixel's opacity growing with |map|."""
    mpl = _mpl()
    cm = mpl.colormaps[cmap] if isinstance(cmap, str) else cmap
    lo, hi = _scale_limits(sign)
    rgba = cm((norm - lo) / (hi - lo))
    rgba[..., 3] = np.clip(np.abs(norm) * (0.35 + alpha_overlay), 0.0, 1.0)
    ax.imshow(0.25 + 0.5 * img.mean(axis=-1), cmap="gray", vmin=0.0, vmax=1.0)
    ax.imshow(rgba)
    ax.set_xticks([])
    ax.set_yticks([])


def visualize_image_attr(
    attr,
    image=None,
    method: str = "heat_map",
    sign: str = "absolute_value",
    outlier_perc: float = 2,
    alpha_overlay: float = 0.5,
    cmap=None,
    ax=None,
    vmax: float | None = None,
    *,
    reduction: str | None = "sum",
    outlier_method: str = "mass",
    show_colorbar: bool = False,
    title: str | None = None,
    fig_size: tuple[float, float] = (6, 6),
    use_pyplot: bool = False,
):
    """Plot one attribution map (Captum's ``visualize_image_attr``); returns ``(fig, ax)``.

    ``attr``: ``[H, W, C]`` or ``[H, W]``; ``image``: ``[H, W, 3]`` in [0, 1] or uint8
    (required by every method except ``"heat_map"``).  Draws on ``ax`` when given.
    """
    if ax is None:
        fig, axes = _new_figure(fig_size, use_pyplot=use_pyplot)
        ax = axes[0, 0]
    else:
        fig = ax.figure
    mappable = _draw(
        ax,
        attr,
        image,
        method,
        sign,
        outlier_perc,
        alpha_overlay,
        cmap,
        vmax,
        reduction,
        outlier_method,
    )
    if show_colorbar and mappable is not None:
        scale = (
            vmax
            if vmax is not None
            else attr_threshold(
                attr, sign, outlier_perc, reduction, outlier_method=outlier_method
            )
        )
        _colorbar(fig, ax, mappable, sign, scale)
    if title is not None:
        ax.set_title(title)
    return fig, ax


def figure_grid(
    images,
    attrs_by_method: Mapping[str, object],
    *,
    method: str = "blended_heat_map",
    sign: str = "absolute_value",
    outlier_perc: float = 2,
    shared_scale: str = "row",
    reduction: str | None = "sum",
    outlier_method: str = "mass",
    alpha_overlay: float = 0.5,
    cmap=None,
    row_titles: Sequence[str] | None = None,
    show_colorbar: bool = True,
    panel_size: float = 2.6,
    use_pyplot: bool = False,
):
    """Side-by-side comparison: one row per image, the image then one column per method.

    ``images``: ``[N, H, W, 3]`` (or a list); ``attrs_by_method``: name -> ``[N, H, W, C]``.
    ``shared_scale``: ``"row"`` (one colour scale per image across methods), ``"column"``
    (per method across images), ``"all"`` (one scale) or ``"none"`` (every map its own).
    Returns ``(fig, axes)`` with ``axes`` of shape ``[N, 1 + n_methods]``.
    """
    _check_choice("shared_scale", shared_scale, ("row", "column", "all", "none"))
    imgs = (
        list(np.asarray(images))
        if not isinstance(images, (list, tuple))
        else list(images)
    )
    if not imgs:
        raise ValueError("images: expected at least one image, got none")
    if not attrs_by_method:
        raise ValueError(
            "attrs_by_method: expected at least one method, got an empty mapping"
        )
    n = len(imgs)
    maps = {}
    for name, arr in attrs_by_method.items():
        seq = list(arr) if isinstance(arr, (list, tuple)) else list(np.asarray(arr))
        if len(seq) != n:
            raise ValueError(
                f"attrs_by_method[{name!r}]: expected {n} maps (one per image), got {len(seq)}"
            )
        maps[name] = [_as_attr(m) for m in seq]
    if row_titles is not None and len(row_titles) != n:
        raise ValueError(f"row_titles: expected {n} titles, got {len(row_titles)}")
    names = list(maps)

    kw = {
        "sign": sign,
        "outlier_perc": outlier_perc,
        "reduction": reduction,
        "outlier_method": outlier_method,
    }
    if shared_scale == "all":
        v = shared_vmax([m for name in names for m in maps[name]], **kw)
        scale = lambda i, j: v
    elif shared_scale == "row":
        rows = [shared_vmax([maps[name][i] for name in names], **kw) for i in range(n)]
        scale = lambda i, j: rows[i]
    elif shared_scale == "column":
        cols = [shared_vmax(maps[name], **kw) for name in names]
        scale = lambda i, j: cols[j]
    else:
        scale = lambda i, j: attr_threshold(maps[names[j]][i], **kw)

    ncols = 1 + len(names)
    fig, axes = _new_figure(
        (panel_size * ncols + 0.6, panel_size * n), n, ncols, use_pyplot=use_pyplot
    )
    for i in range(n):
        img = _as_image(imgs[i], name=f"images[{i}]")
        axes[i, 0].imshow(img)
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i])
        if i == 0:
            axes[i, 0].set_title("image")
        for j, name in enumerate(names):
            ax = axes[i, j + 1]
            m = _draw(
                ax,
                maps[name][i],
                img,
                method,
                sign,
                outlier_perc,
                alpha_overlay,
                cmap,
                scale(i, j),
                reduction,
                outlier_method,
            )
            if i == 0:
                ax.set_title(name)
            last_in_group = (
                (shared_scale == "row" and j == len(names) - 1)
                or (shared_scale == "column" and i == n - 1)
                or (shared_scale == "all" and i == n - 1 and j == len(names) - 1)
                or shared_scale == "none"
            )
            if show_colorbar and m is not None and last_in_group:
                _colorbar(fig, ax, m, sign, scale(i, j))
    fig.tight_layout()
    return fig, axes


def explanation_figure(
    image,
    attr,
    *,
    title: str | None = None,
    pred_label: str | int | None = None,
    prob: float | None = None,
    true_label: str | int | None = None,
    method_name: str | None = None,
    sign: str = "absolute_value",
    outlier_perc: float = 2,
    reduction: str | None = "sum",
    outlier_method: str = "mass",
    cmap=None,
    alpha_overlay: float = 0.5,
    vmax: float | None = None,
    note: str | None = None,
    panel_size: float = 4.0,
    dpi: int = 100,
    use_pyplot: bool = False,
):
    """The per-image explanation figure: image | heat map (with scale) | overlay.

    ``image``: ``[H, W, 3]`` in [0, 1] or uint8; ``attr``: ``[H, W, C]`` or ``[H, W]``.
    The heading shows ``title``, the predicted class and its probability (``prob`` in
    [0, 1]) and ``true_label``; ``note`` adds a small footer line (e.g. n_steps, delta).
    Returns ``(fig, axes)`` with ``axes`` of shape ``[3]``.
    """
    if prob is not None and not (0.0 <= float(prob) <= 1.0):
        raise ValueError(f"prob: expected a probability in [0, 1], got {prob!r}")
    a = _as_attr(attr)
    img = _as_image(image, a.shape[:2])
    fig, axes = _new_figure(
        (panel_size * 3 + 0.8, panel_size + 1.0), 1, 3, use_pyplot=use_pyplot
    )
    fig.set_dpi(dpi)
    axes = axes[0]
    scale = (
        vmax
        if vmax is not None
        else attr_threshold(
            a, sign, outlier_perc, reduction, outlier_method=outlier_method
        )
    )
    _draw(
        axes[0],
        a,
        img,
        "original_image",
        sign,
        outlier_perc,
        alpha_overlay,
        cmap,
        scale,
        reduction,
        outlier_method,
    )
    axes[0].set_title("input" if true_label is None else f"input (true: {true_label})")
    if cmap is None:
        cmap = "bwr" if sign == "all" else "inferno"
    heat = _draw(
        axes[1],
        a,
        img,
        "heat_map",
        sign,
        outlier_perc,
        alpha_overlay,
        cmap,
        scale,
        reduction,
        outlier_method,
    )
    label = method_name or "attribution"
    axes[1].set_title(f"{label} ({sign.replace('_', ' ')})")
    _colorbar(fig, axes[1], heat, sign, scale)
    norm = normalize_attr(
        a, sign, outlier_perc, reduction, scale, outlier_method=outlier_method
    )
    _overlay(axes[2], img, norm, cmap, sign, alpha_overlay)
    axes[2].set_title("overlay")
    parts = [] if title is None else [str(title)]
    if pred_label is not None:
        parts.append(
            f"predicted: {pred_label}"
            + ("" if prob is None else f" (p = {float(prob):.3f})")
        )
    elif prob is not None:
        parts.append(f"p = {float(prob):.3f}")
    if parts:
        fig.suptitle("   |   ".join(parts), fontsize=12)
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=9, color="0.3")
    if scale <= 0:
        axes[1].text(
            0.5,
            0.5,
            "all-zero map",
            transform=axes[1].transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    return fig, axes


def _feature_values(attr, sign: str | None) -> tuple[np.ndarray, str]:
    """Per-feature bar lengths ``[F]`` from ``[F]`` (one example) or ``[N, F]`` (mean)."""
    a = np.asarray(attr)
    if a.ndim not in (1, 2) or a.shape[-1] == 0 or a.size == 0:
        raise ValueError(
            "attr: expected per-feature attributions [F] (one example) or [N, F] (N "
            f"examples, averaged), got shape {a.shape}"
        )
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(
        a.dtype, np.complexfloating
    ):
        raise ValueError(f"attr: expected real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ValueError(f"attr: expected finite values, got {bad} NaN/inf entries")
    if sign is None:
        sign = "all" if a.ndim == 1 else "absolute_value"
    _check_choice("sign", sign, SIGNS)
    values = a if sign == "all" else _signed_part(a, sign)
    return (values if values.ndim == 1 else values.mean(axis=0)), sign


def visualize_feature_attr(
    attr,
    feature_names: Sequence[str],
    *,
    sign: str | None = None,
    top_k: int | None = None,
    ax=None,
    title: str | None = None,
    xlabel: str | None = None,
    fig_size: tuple[float, float] | None = None,
    use_pyplot: bool = False,
):
    """Feature importance as a horizontal bar chart, one bar per feature; ``(fig, ax)``.

    ``attr``: ``[F]`` (one example) or ``[N, F]`` (averaged over the ``N`` examples);
    ``feature_names``: ``F`` names. ``sign``: ``"all"`` (signed bars: positive green,
    negative red; the default for ``[F]``), ``"absolute_value"`` (mean ``|A|``, the
    default for ``[N, F]``), ``"positive"`` or ``"negative"`` (mean of that part, as
    magnitudes). Bars are sorted by magnitude, the largest on top; ``top_k`` keeps the
    ``top_k`` largest. Draws on ``ax`` when given.
    """
    values, sign = _feature_values(attr, sign)
    names = [feature_names] if isinstance(feature_names, str) else list(feature_names)
    if len(names) != values.shape[0]:
        raise ValueError(
            f"feature_names: expected {values.shape[0]} names (attr's last axis), got"
            f" {len(names)}"
        )
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1
    ):
        raise ValueError(f"top_k: expected None or an integer >= 1, got {top_k!r}")
    order = np.argsort(-np.abs(values), kind="stable")[:top_k]
    shown = values[order]
    if ax is None:
        size = fig_size or (6.0, 0.6 + 0.28 * len(order))
        fig, axes = _new_figure(size, use_pyplot=use_pyplot)
        ax = axes[0, 0]
    else:
        fig = ax.figure
    if sign == "all":
        colors = np.where(shown >= 0, "tab:green", "tab:red")
    else:
        colors = "tab:blue"
    y = np.arange(len(order))
    ax.barh(y, shown, color=colors)
    ax.set_yticks(y, [str(names[i]) for i in order])
    ax.invert_yaxis()  # the largest on top
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    if xlabel is None:
        xlabel = {
            "all": "attribution",
            "absolute_value": "|attribution|",
            "positive": "positive attribution",
            "negative": "|negative attribution|",
        }[sign]
        if np.asarray(attr).ndim == 2:
            xlabel = f"mean {xlabel} over {np.asarray(attr).shape[0]} examples"
    ax.set_xlabel(xlabel)
    if title is not None:
        ax.set_title(title)
    return fig, ax


def save_figure(fig, path, *, dpi: int | None = None, close: bool = True) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary file, then rename), so an
    interrupted run never leaves a half-written image.  Returns the path."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"path={str(path)!r}: the folder {str(path.parent)!r} does not exist"
        )
    fmt = path.suffix.lstrip(".").lower() or "png"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format=fmt, dpi=dpi if dpi is not None else "figure")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        if close and "matplotlib.pyplot" in sys.modules:
            import matplotlib.pyplot as plt

            if plt.fignum_exists(getattr(fig, "number", -1)):
                plt.close(fig)
    return path


# ----------------------------------------------------------------------------- text

#: The colours of the text heat maps at the ends of the scale (ColorBrewer RdYlGn):
#: negative attribution red, positive green, zero white.
_TEXT_NEGATIVE = (215, 48, 39)
_TEXT_POSITIVE = (26, 150, 65)


def _text_rows(tokens, scores) -> tuple[list[list[str]], list[np.ndarray]]:
    """One sequence (``tokens`` strings, ``scores`` ``[L]``) or several (a list of
    each) as lists of rows, checked."""
    one = (
        isinstance(tokens, Sequence)
        and not isinstance(tokens, str)
        and (len(tokens) == 0 or isinstance(tokens[0], str))
    )
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(
            "tokens: expected a list of strings (one sequence) or a list of such lists,"
            f" got {type(tokens).__name__}"
        )
    rows = [list(tokens)] if one else [list(r) for r in tokens]
    if one:
        score_rows = [scores]
    elif isinstance(scores, np.ndarray | Sequence) or hasattr(scores, "shape"):
        score_rows = list(scores)
    else:
        raise TypeError(f"scores: expected arrays, got {type(scores).__name__}")
    if not rows:
        raise ValueError("tokens: expected at least one sequence, got none")
    if len(score_rows) != len(rows):
        raise ValueError(
            f"scores: expected one score array per sequence ({len(rows)}), got"
            f" {len(score_rows)}"
        )
    out = []
    for i, (row, s) in enumerate(zip(rows, score_rows)):
        if not all(isinstance(t, str) for t in row):
            raise TypeError(f"tokens: expected strings, got {row!r} in sequence {i}")
        s = np.asarray(s)
        if not np.issubdtype(s.dtype, np.number) or np.issubdtype(
            s.dtype, np.complexfloating
        ):
            raise ValueError(f"scores: expected real numbers, got dtype {s.dtype}")
        if s.shape != (len(row),):
            raise ValueError(
                f"scores: expected one score per token, shape ({len(row)},), got shape"
                f" {s.shape} in sequence {i}"
            )
        s = s.astype(np.float64)
        bad = int(s.size - np.count_nonzero(np.isfinite(s)))
        if bad:
            raise ValueError(f"scores: expected finite values, got {bad} NaN/inf")
        out.append(s)
    return rows, out


def _text_scale(scores: list[np.ndarray], scale) -> float:
    """The shared colour scale: ``scale`` or the largest ``|score|`` (1 if all 0)."""
    if scale is None:
        top = max((float(np.abs(s).max()) for s in scores if s.size), default=0.0)
        return top if top > 0 else 1.0
    if isinstance(scale, bool) or not (
        isinstance(scale, int | float | np.number) and np.isfinite(scale) and scale > 0
    ):
        raise ValueError(f"scale: expected None or a number > 0, got {scale!r}")
    return float(scale)


def _text_labels(labels, n: int) -> list[str | None]:
    if labels is None:
        return [None] * n
    labels = [labels] if isinstance(labels, str) else list(labels)
    if len(labels) != n:
        raise ValueError(
            f"labels: expected one label per sequence ({n}), got {len(labels)}"
        )
    return [str(label) for label in labels]


def text_color(score: float, scale: float) -> tuple[int, int, int]:
    """The background of a token: white blended towards green (``score > 0``) or red
    (``< 0``) by ``min(|score| / scale, 1)``; an RGB triple in 0..255."""
    t = min(abs(float(score)) / float(scale), 1.0)
    end = _TEXT_POSITIVE if score > 0 else _TEXT_NEGATIVE
    return tuple(round(255 + (c - 255) * t) for c in end)


def text_html(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    scores,
    *,
    scale: float | None = None,
    labels: str | Sequence[str] | None = None,
) -> str:
    """Token heat map as HTML (Captum's ``visualize_text``): one ``<span>`` per token.

    ``tokens``: the strings of one sequence ``[L]`` with ``scores`` ``[L]``, or a list
    of sequences with a list of score arrays (one row each). Each token's background
    goes from white to green (positive) or red (negative) with ``|score| / scale``,
    the score in its tooltip; ``scale`` defaults to the largest ``|score|`` over all
    rows, so rows share one scale (pass it to share across calls). ``labels``: a
    caption per row (e.g. ``"label: positive, predicted: positive (0.93)"``). Text is
    HTML-escaped. Display in a notebook with ``IPython.display.HTML``.
    """
    rows, score_rows = _text_rows(tokens, scores)
    scale = _text_scale(score_rows, scale)
    import html

    parts = [
        '<div class="jaxattr-text" style="font-family: monospace; line-height: 2">'
    ]
    for row, s, label in zip(rows, score_rows, _text_labels(labels, len(rows))):
        parts.append('<div class="jaxattr-text-row" style="margin-bottom: 0.6em">')
        if label is not None:
            parts.append(f"<div><b>{html.escape(label)}</b></div>")
        for token, v in zip(row, s):
            r, g, b = text_color(v, scale)
            parts.append(
                f'<span style="background-color: #{r:02x}{g:02x}{b:02x}; color: #000;'
                f' padding: 1px 3px; margin: 0 1px; border-radius: 3px"'
                f' title="{v:.4g}">{html.escape(token)}</span>'
            )
        parts.append("</div>")
    lo, hi = text_color(-scale, scale), text_color(scale, scale)
    parts.append(
        '<div class="jaxattr-text-legend" style="font-size: 0.85em; color: #555">'
        f'<b style="color: rgb{lo}">&#9632;</b> {-scale:.3g} &nbsp;'
        f' white 0 &nbsp; <b style="color: rgb{hi}">&#9632;</b> +{scale:.3g}'
        " (attribution; one scale for all rows)</div></div>"
    )
    return "\n".join(parts)


def _wrap(row: list[str], line_width: int) -> list[list[tuple[int, str]]]:
    """Tokens placed on lines of ``line_width`` characters: ``[[(column, token)]]``."""
    lines, line, col = [], [], 0
    for i, token in enumerate(row):
        width = len(token) + 1
        if line and col + width > line_width:
            lines.append(line)
            line, col = [], 0
        line.append((col, i))
        col += width
    lines.append(line)
    return lines


def visualize_text(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    scores,
    *,
    scale: float | None = None,
    labels: str | Sequence[str] | None = None,
    line_width: int = 72,
    font_size: float = 11.0,
    title: str | None = None,
    colorbar: bool = True,
    ax=None,
    use_pyplot: bool = False,
):
    """Token heat map as a matplotlib figure (save it as a PNG); ``(fig, ax)``.

    The figure of :func:`text_html`: the same tokens, colours (:func:`text_color`) and
    shared ``scale``, in a monospace font wrapped at ``line_width`` characters, one
    block per sequence with its ``labels`` caption, and a colour bar in attribution
    units. Tokens are drawn as plain text (a ``$`` is no mathtext). Draws on ``ax`` when
    given (the wrapping assumes the width this function would choose: ``line_width``
    characters of ``font_size``).
    """
    rows, score_rows = _text_rows(tokens, scores)
    scale = _text_scale(score_rows, scale)
    captions = _text_labels(labels, len(rows))
    if (
        isinstance(line_width, bool)
        or not isinstance(line_width, int)
        or line_width < 1
    ):
        raise ValueError(f"line_width: expected an integer >= 1, got {line_width!r}")
    layout = []  # (y, x, text, score or None), y in lines from the top
    y = 0
    for row, s, caption in zip(rows, score_rows, captions):
        if caption is not None:
            layout.append((y, 0, caption, None))
            y += 1
        for line in _wrap(row, line_width):
            layout.extend((y, col, row[i], s[i]) for col, i in line)
            y += 1
        y += 0.5
    n_lines = max(y - 0.5, 1)
    char_in = 0.602 * font_size / 72  # the monospace advance (DejaVu Sans Mono), inches
    line_in = 1.9 * font_size / 72
    text_h = n_lines * line_in  # the axes' height, inches
    if ax is None:
        width = (line_width + 0.5) * char_in
        top = 0.1 + (0.35 if title else 0.0)
        bottom = 0.9 if colorbar else 0.1
        fig_w, fig_h = width + 0.4, text_h + top + bottom
        fig, axes = _new_figure((fig_w, fig_h), use_pyplot=use_pyplot)
        ax = axes[0, 0]
        ax.set_position([0.2 / fig_w, bottom / fig_h, width / fig_w, text_h / fig_h])
    else:
        fig = ax.figure
    for yy, x, text, s in layout:
        if s is None:
            ax.text(
                x,
                yy,
                text,
                va="center",
                ha="left",
                fontsize=font_size,
                fontweight="bold",
                family="monospace",
                parse_math=False,
            )
            continue
        r, g, b = text_color(s, scale)
        ax.text(
            x,
            yy,
            text,
            va="center",
            ha="left",
            fontsize=font_size,
            family="monospace",
            parse_math=False,
            gid="jaxattr-token",
            bbox={
                "boxstyle": "round,pad=0.15",
                "facecolor": (r / 255, g / 255, b / 255),
                "edgecolor": "none",
            },
        )
    ax.set_xlim(-0.5, line_width)
    ax.set_ylim(n_lines - 0.5, -0.5)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    if colorbar:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import LinearSegmentedColormap, Normalize

        ends = [tuple(c / 255 for c in text_color(v, 1.0)) for v in (-1.0, 0.0, 1.0)]
        cmap = LinearSegmentedColormap.from_list("jaxattr_text", ends)
        mappable = ScalarMappable(Normalize(-scale, scale), cmap)
        cax = ax.inset_axes([0.25, -0.4 / text_h, 0.5, 0.12 / text_h])
        cb = fig.colorbar(mappable, cax=cax, orientation="horizontal")
        cb.set_label("attribution", fontsize=font_size * 0.8)
        cb.ax.tick_params(labelsize=font_size * 0.75)
    return fig, ax
