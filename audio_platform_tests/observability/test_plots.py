"""Charts render to real PNGs of the promised size, and draw exactly the data they are given."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from audio_platform.observability.plots import (
    ALERT,
    DPI,
    MAX_LABELLED_BARS,
    NEUTRAL,
    chart_markdown,
    confusion_matrix_figure,
    distributions_figure,
    figure_png,
    histogram_figure,
    markdown_cell,
    markdown_image,
    training_curves_figure,
    yield_figure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which PNG requires to come first."""
    assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def assert_renders(figure: Figure) -> bytes:
    png = figure_png(figure)
    inches = figure.get_size_inches()
    assert png_size(png) == (round(inches[0] * DPI), round(inches[1] * DPI))
    return png


def bar_heights(figure: Figure, axis: int = 0) -> list[float]:
    return [patch.get_height() for patch in figure.axes[axis].patches]


def test_histogram_counts_every_finite_value_in_its_bin() -> None:
    # 40 s is beyond the last edge: counted in the last bin, not dropped; NaN is not a value.
    figure = histogram_figure([0.2, 0.7, 1.5, 29.9, 40.0, np.nan], np.arange(0.0, 31.0), title="d", xlabel="s")
    heights = bar_heights(figure)
    assert len(heights) == 30
    assert heights[0] == 2 and heights[1] == 1 and heights[29] == 2 and sum(heights) == 5
    assert "n=5" in figure.axes[0].get_title()
    assert_renders(figure)


def test_distributions_draw_one_panel_per_column() -> None:
    rng = np.random.default_rng(0)
    columns = {"snr_db": rng.normal(20, 5, 200), "avg_logprob": [np.nan, np.nan], "topsis_score": rng.random(150)}
    figure = distributions_figure(columns, title="scores", bins=10)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == list(columns)
    assert sum(bar_heights(figure, 0)) == 200 and sum(bar_heights(figure, 2)) == 150
    assert not bar_heights(figure, 1) and visible[1].texts[0].get_text() == "no data"
    assert_renders(figure)


def test_constant_and_nearly_constant_columns_still_plot() -> None:
    # Seen on a real shard: scores differing only in the 16th digit made numpy refuse to bin them.
    columns = {"constant": [5.0, 5.0, 5.0], "float_noise": [0.7, 0.7 + 1e-16, 0.7 - 1e-16], "large": [1e12, 1e12]}
    figure = distributions_figure(columns, title="scores", bins=20)
    assert [sum(bar_heights(figure, i)) for i in range(3)] == [3, 3, 2]
    assert_renders(figure)


def test_yield_is_the_curated_share_of_each_shard() -> None:
    figure = yield_figure(["a-0000", "a-0001", "a-0002", "a-0003"], [3, 0, 5, 1], [4, 0, 5, 4])
    ax = figure.axes[0]
    bars = ax.patches
    assert [bar.get_width() for bar in bars] == pytest.approx([0.75, 0.0, 1.0, 0.25])
    assert [label.get_text() for label in ax.get_yticklabels()] == ["a-0000", "a-0001", "a-0002", "a-0003"]
    assert [text.get_text() for text in ax.texts] == ["75% (3/4)", "0% (0/0)", "100% (5/5)", "25% (1/4)"]
    assert "9 of 13 segments (69%)" in ax.get_title()
    # Neutral bars; red only for the shard below half the overall yield (a shard without segments is not).
    colors = [to_hex(bar.get_facecolor()) for bar in bars]
    assert colors == [NEUTRAL, NEUTRAL, NEUTRAL, ALERT] and "red: below 50% of it" in ax.get_title()
    assert_renders(figure)


def test_many_shards_show_how_many_reach_each_yield() -> None:
    shards = [f"s-{i:04d}" for i in range(MAX_LABELLED_BARS + 10)]
    figure = yield_figure(shards, [9] * (len(shards) - 1) + [1], [10] * len(shards))
    ax = figure.axes[0]
    assert sum(bar.get_height() for bar in ax.patches) == len(shards)
    assert ax.get_ylabel() == f"shards (of {len(shards)})"
    assert {to_hex(bar.get_facecolor()) for bar in ax.patches if bar.get_height()} == {NEUTRAL, ALERT}
    assert_renders(figure)


def test_training_curves_plot_the_history() -> None:
    history = [
        {"epoch": 1.0, "train_loss": 0.9, "val_loss": 1.0, "lr": 0.01},
        {"epoch": 2.0, "train_loss": 0.5, "val_loss": 0.7, "lr": 0.005},
    ]
    figure = training_curves_figure(history)
    loss_axis, lr_axis = figure.axes
    assert [list(line.get_ydata()) for line in loss_axis.lines] == [[0.9, 0.5], [1.0, 0.7]]
    assert list(lr_axis.lines[0].get_ydata()) == [0.01, 0.005]
    assert_renders(figure)


def test_confusion_matrix_rows_are_truth_columns_prediction() -> None:
    figure = confusion_matrix_figure(true_positives=5, false_positives=1, false_negatives=2, true_negatives=30)
    ax = figure.axes[0]
    assert np.asarray(ax.images[0].get_array()).tolist() == [[30, 1], [2, 5]]
    assert [text.get_text() for text in ax.texts] == ["30", "1", "2", "5"]
    assert_renders(figure)


def test_markdown_image_embeds_the_png() -> None:
    png = figure_png(confusion_matrix_figure(1, 0, 0, 1))
    markdown = markdown_image(png, "cm")
    assert markdown.startswith("![cm](data:image/png;base64,") and markdown.endswith(")")
    assert base64.b64decode(markdown.split(",", 1)[1][:-1]) == png


def test_a_chart_that_fails_to_draw_becomes_a_note_not_an_error() -> None:
    def broken() -> Figure:
        raise ValueError("Too many bins for data range")

    assert chart_markdown(broken, "score distributions") == (
        "*score distributions: chart not drawn (ValueError: Too many bins for data range)*"
    )
    drawn = chart_markdown(lambda: yield_figure(["a-0000"], [1], [2]), "yield")
    assert drawn.startswith("![yield](data:image/png;base64,")


def test_a_user_named_value_stays_one_markdown_cell() -> None:
    assert markdown_cell("a|b\r\nc\\d") == "a\\|b  c\\\\d"
    assert markdown_cell(3) == "3"
