"""Charts for asset metadata and MLflow runs, rendered to PNG without a display.

Figures use matplotlib's object-oriented API (``matplotlib.figure.Figure``), never pyplot: pyplot
keeps every figure in a global registry until it is closed (a leak in a long-lived code server)
and picks a GUI backend from the environment. A bare ``Figure`` renders through Agg, is freed
like any object and is safe to build from several threads.

The PNGs travel inside Dagster's event log as base64 (``markdown_image``), so they are kept small:
a few inches at ``DPI`` dots per inch, typically 10-40 kB.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

DPI = 80
# Shard keys are readable below this many bars; above it the chart shows the yields' histogram.
MAX_LABELLED_BARS = 30
# A shard curating less than this share of the overall yield is drawn in ALERT, the rest NEUTRAL.
LOW_YIELD_SHARE = 0.5
NEUTRAL = "#4c72b0"
ALERT = "#c44e52"
_PANEL_COLUMNS = 4
_log = logging.getLogger(__name__)


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes at ``DPI``, exactly ``figsize * DPI`` pixels."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that the Dagster UI renders inline (``MetadataValue.md``): a data-URI image."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def chart_markdown(build: Callable[[], Figure], alt: str) -> str:
    """``build()``'s figure as inline Markdown, or a one-line note if drawing it fails.

    Charts decorate a stage whose data is already written: a plotting bug (numpy once refused to
    bin a nearly constant column) must cost the chart, never fail the shard.
    """
    try:
        return markdown_image(figure_png(build()), alt)
    except Exception as err:  # any plotting failure; the stage's outputs stand
        _log.warning("chart %r not drawn: %s", alt, err, exc_info=True)
        return f"*{alt}: chart not drawn ({type(err).__name__}: {err})*"


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def histogram_figure(
    values: Sequence[float] | np.ndarray, edges: Sequence[float] | np.ndarray, *, title: str, xlabel: str
) -> Figure:
    """One histogram over fixed bin ``edges`` (comparable across shards). Values outside the
    edges are counted in the first or last bin, so the bars always add up to the number of
    finite values."""
    finite = _finite(values)
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    ax = figure.add_subplot()
    bins = np.asarray(edges, dtype=np.float64)
    ax.hist(np.clip(finite, bins[0], bins[-1]), bins=bins.tolist(), color="#4c72b0")
    ax.set_title(f"{title} (n={finite.size})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if finite.size == 0:
        _no_data(ax)
    return figure


def distributions_figure(columns: Mapping[str, Sequence[float] | np.ndarray], *, title: str, bins: int = 20) -> Figure:
    """Small multiples: one histogram per column (e.g. each quality criterion and the TOPSIS
    score), each over its own finite range."""
    rows = max(1, math.ceil(len(columns) / _PANEL_COLUMNS))
    figure = Figure(figsize=(2.6 * _PANEL_COLUMNS, 2.2 * rows), layout="constrained")
    figure.suptitle(title)
    axes = figure.subplots(rows, _PANEL_COLUMNS, squeeze=False).ravel()
    for ax, (name, values) in zip(axes, columns.items(), strict=False):
        finite = _finite(values)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        if finite.size:
            ax.hist(finite, bins=_even_edges(finite, bins).tolist(), color="#55a868")
        else:
            _no_data(ax)
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    return figure


def _even_edges(finite: np.ndarray, bins: int) -> np.ndarray:
    """``bins`` equal bins over the data's range, widened to one unit around a (nearly) constant
    column: numpy refuses to split a range narrower than float resolution (e.g. two scores that
    differ in the 16th digit) into finite bins."""
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)):
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def yield_figure(shards: Sequence[str], curated: Sequence[int], candidates: Sequence[int]) -> Figure:
    """Curated share of each shard's segments: a labelled horizontal bar per shard (shards are
    categories, not a series), neutral unless a shard yields less than half the overall share (the
    sign of a policy or a model off for that data); above ``MAX_LABELLED_BARS`` shards, how many
    shards reach each yield."""
    kept = np.asarray(curated, dtype=np.float64)
    total = np.asarray(candidates, dtype=np.float64)
    ratio = np.divide(kept, total, out=np.zeros_like(kept), where=total > 0)
    overall = kept.sum() / total.sum() if total.sum() else 0.0
    low = (total > 0) & (ratio < LOW_YIELD_SHARE * overall)
    title = f"curated yield per shard: {int(kept.sum())} of {int(total.sum())} segments ({overall:.0%})"
    if len(shards) > MAX_LABELLED_BARS:
        figure = Figure(figsize=(8, 3.5), layout="constrained")
        ax = figure.add_subplot()
        counts, edges = np.histogram(ratio[total > 0], bins=20, range=(0.0, 1.0))
        colors = [ALERT if edge < LOW_YIELD_SHARE * overall else NEUTRAL for edge in edges[:-1]]
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=colors, edgecolor="white")
        ax.set_xlabel("curated share of the shard's segments")
        ax.set_ylabel(f"shards (of {len(shards)})")
    else:
        figure = Figure(figsize=(8, max(2.0, 0.4 * len(shards) + 1.2)), layout="constrained")
        ax = figure.add_subplot()
        positions = np.arange(len(shards))
        ax.barh(positions, ratio, color=[ALERT if flag else NEUTRAL for flag in low])
        ax.set_yticks(positions, list(shards), fontsize=10)
        ax.invert_yaxis()
        for position, share, n_kept, n_total in zip(positions, ratio, kept, total, strict=True):
            ax.text(
                share + 0.01, float(position), f"{share:.0%} ({int(n_kept)}/{int(n_total)})", va="center", fontsize=9
            )
        ax.set_xlim(0, 1.18)  # room for the labels right of a full bar
        ax.set_xticks(np.linspace(0.0, 1.0, 6))
        ax.set_xlabel("curated share of the shard's segments")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    if overall:
        ax.axvline(overall, color="#8c8c8c", linestyle="--", linewidth=1)
    ax.set_title(title + (f"; red: below {LOW_YIELD_SHARE:.0%} of it" if low.any() else ""), fontsize=10)
    if not len(shards):
        _no_data(ax)
    return figure


def training_curves_figure(history: Sequence[Mapping[str, float]]) -> Figure:
    """Train and validation loss per epoch, with the learning-rate schedule on a second axis."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    ax = figure.add_subplot()
    ax.plot(epochs, [row["train_loss"] for row in history], label="train loss", color="#4c72b0")
    ax.plot(epochs, [row["val_loss"] for row in history], label="validation loss", color="#c44e52")
    ax.set_xlabel("epoch")
    ax.set_ylabel("balanced BCE")
    ax.set_title("training curves")
    lr_axis = ax.twinx()
    lr_axis.plot(epochs, [row["lr"] for row in history], label="learning rate", color="#8c8c8c", linestyle=":")
    lr_axis.set_ylabel("learning rate")
    handles = ax.get_legend_handles_labels()[0] + lr_axis.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    if not history:
        _no_data(ax)
    return figure


def confusion_matrix_figure(
    true_positives: int, false_positives: int, false_negatives: int, true_negatives: int
) -> Figure:
    """The 2×2 confusion matrix of test clips: rows are the truth, columns the prediction."""
    matrix = np.array([[true_negatives, false_positives], [false_negatives, true_positives]])
    figure = Figure(figsize=(4, 3.5), layout="constrained")
    ax = figure.add_subplot()
    ax.imshow(matrix, cmap="Blues", vmin=0)
    labels = ["no keyword", "keyword"]
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("test clips")
    threshold = matrix.max() / 2  # dark cells get white text
    for (row, column), count in np.ndenumerate(matrix):
        ax.text(column, row, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    return figure


def markdown_cell(value: object) -> str:
    """``value`` as one Markdown table cell: pipes escaped, line breaks flattened (names come from users)."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
