"""What the views draw and export: durations, self-describing exports, colour bars, one style per
series, colour scales that survive Streamlit's frontend."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from explorer.views import (
    ColourScale,
    colourbar,
    comparison_sheet,
    curve_figure,
    duration,
    histogram,
    histogram_grid_figure,
    npz_bytes,
    value_histogram_figure,
)
from explorer.views.figures import colour_scale_for_plotly, series_style


def test_durations_read_as_a_person_reads_them():
    assert [duration(s) for s in (0.0004, 0.2154, 1.4712, 953.3279, 7530.0)] == [
        "0.4 ms", "215 ms", "1.47 s", "15 min 53 s", "2 h 05 min"]


def test_npz_export_holds_settings_grids_and_pixels():
    settings = {"backbone": "efficientnet_lite0", "sigma_pixels": [20.0, 21.0], "methods": {"gradcam": {"relu": "after"}}}
    data = npz_bytes(settings, {"grid/gradcam": np.ones((7, 7)), "pixels/gradcam/gaussian": np.zeros((224, 224))})
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        assert json.loads(str(f["settings"])) == settings
        assert f["grid/gradcam"].shape == (7, 7) and f["pixels/gradcam/gaussian"].shape == (224, 224)


def test_the_png_sheet_carries_its_colour_bar_and_signed_maps_get_a_diverging_one():
    image = Image.new("RGB", (32, 32), "grey")
    table = {("gradcam", "bilinear"): np.random.default_rng(0).random((32, 32))}
    plain = comparison_sheet(image, table, {"gradcam": "Grad-CAM"}, {"bilinear": "bilinear"})
    signed = comparison_sheet(image, {k: v - 0.5 for k, v in table.items()}, {"gradcam": "Grad-CAM"},
                              {"bilinear": "bilinear"})
    assert plain.height > 32 + 40  # tiles, labels and the bar
    bar = np.asarray(colourbar(ColourScale(-1.0, 1.0, True), width=100))
    centre = bar[8, 10 + 50].astype(int)
    assert (centre > 200).all()  # a diverging bar is near white at zero
    assert np.asarray(signed).shape != ()


def test_one_style_per_series_across_charts():
    a = curve_figure(np.arange(3), {"Grad-CAM · bilinear": np.ones(3), "Grad-CAM · gaussian": np.ones(3),
                                    "Score-CAM · bilinear": np.ones(3)}, "t", "x", "y")
    b = value_histogram_figure(np.linspace(0, 1, 4), {"Score-CAM · bilinear": np.ones(3), "Grad-CAM · bilinear": np.ones(3)})
    colours_a = {t.name: t.line.color for t in a.data}
    colours_b = {t.name: t.line.color for t in b.data}
    assert colours_a["Grad-CAM · bilinear"] == colours_b["Grad-CAM · bilinear"] == colours_a["Grad-CAM · gaussian"]
    assert colours_a["Score-CAM · bilinear"] == colours_b["Score-CAM · bilinear"] != colours_a["Grad-CAM · bilinear"]
    assert series_style("Grad-CAM · gaussian")[1] == "dash" and series_style("Grad-CAM · bilinear")[1] == "solid"
    assert series_style("Grad-CAM++ · bilinear")[0] != series_style("Grad-CAM · bilinear")[0]  # longest label wins


def test_value_histograms_switch_to_a_log_axis_when_one_spike_hides_the_rest():
    spike = np.array([1e6, 10.0, 3.0])
    assert value_histogram_figure(np.linspace(0, 1, 4), {"CAM · bilinear": spike}).layout.yaxis.type == "log"
    assert value_histogram_figure(np.linspace(0, 1, 4), {"CAM · bilinear": np.ones(3)}).layout.yaxis.type == "linear"


def test_a_log_share_axis_is_labelled_once_per_decade_in_percent():
    spike = np.array([999_000.0, 990.0, 10.0])  # shares 0.999, 9.9e-4, 1e-5
    axis = value_histogram_figure(np.linspace(0, 1, 4), {"CAM · bilinear": spike}).layout.yaxis
    assert list(axis.tickvals) == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert list(axis.ticktext) == ["0.001%", "0.01%", "0.1%", "1%", "10%", "100%"]
    assert value_histogram_figure(np.linspace(0, 1, 4), {"CAM · bilinear": np.ones(3)}).layout.yaxis.tickformat == ".2~%"


def test_no_colour_of_a_plotly_scale_is_a_streamlit_placeholder():
    for name in ("Inferno", "Magma", "Viridis"):
        assert not any(c.lower().startswith("#0000") for _, c in colour_scale_for_plotly(name))


def test_histograms_of_several_methods_sit_side_by_side_each_on_its_own_axis():
    rng = np.random.default_rng(0)
    hists = {"CAM": histogram(rng.normal(0, 40, 49)), "Grad-CAM": histogram(rng.random(49) * 1e-3),
             "Score-CAM": histogram(rng.random(49)), "Eigen-CAM": histogram(rng.random(49))}
    fig = histogram_grid_figure(hists, columns=3)
    assert [t.name for t in fig.data] == list(hists)
    axes = {t.xaxis for t in fig.data}
    assert len(axes) == 4  # one panel per method, not one chart with a tab per method
    assert [a.text for a in fig.layout.annotations][:4] == list(hists)
    assert fig.data[0].marker.color == series_style("CAM")[0]
    assert len([s for s in fig.layout.shapes if s.x0 == 0]) == 1  # zero marked only in the signed map


def test_colourise_gives_matplotlibs_colours_from_its_table():
    from matplotlib import colormaps

    from explorer.views.maps import colourise

    rng = np.random.default_rng(1)
    for scale in (ColourScale(0.0, 1.0, False), ColourScale(-2.0, 2.0, True)):
        values = rng.uniform(scale.lo, scale.hi, (40, 30))
        values[0, :2] = scale.lo, scale.hi  # both ends of the scale
        unit = np.clip((values - scale.lo) / (scale.hi - scale.lo), 0, 1)
        expected = (colormaps[scale.cmap](unit)[..., :3] * 255).astype(np.uint8)
        np.testing.assert_array_equal(colourise(values, scale), expected)


def test_no_two_series_of_a_chart_share_a_colour_and_dash():
    """The reference and control curves of a precision-recall chart used to hash to one grey."""
    from explorer.views.figures import precision_recall_figure

    curve = (np.linspace(1, 0, 5), np.linspace(0, 1, 5), 50.0)
    names = ["reference: object mask", "reference: discriminative part only", "control: HSV saturation",
             "control: distance from the median colour", "control: centre Gaussian (the protocol's baseline)",
             "control: frequency-tuned colour saliency (Achanta et al. 2009)", "Grad-CAM · bilinear",
             "Grad-CAM · gaussian", "CAM · bilinear"]
    fig = precision_recall_figure({name: curve for name in names})
    styles = [(trace.line.color, trace.line.dash) for trace in fig.data]
    assert len(set(styles)) == len(styles), styles
    again = precision_recall_figure({name: (curve[0], curve[1], 12.0) for name in names})
    assert [(t.line.color, t.line.dash) for t in again.data] == styles  # the score in the legend changes nothing
