"""Streamlit glue shared by every page of CAM Explorer: the only Streamlit imports in `explorer/`.

Split by what each part serves; everything a page needs is re-exported here, so a page reads
`from explorer import ui` and stays pure layout:

| module | serves |
|---|---|
| `widgets` | choices that persist across pages; `attempt`, the one place an error becomes a message |
| `loading` | cached backbones, decoded uploads, layer shapes, top-5; the network lock |
| `sidebar` | the shared sidebar (drawn once by the router) and `selection()` |
| `maps` | methods, grid maps from one capture, pixel maps, overlays and downloads (Compare) |
| `sigma` | the shared Gaussian sigma and the correlation-against-sigma curve (Smoothing Lab) |
| `erf` | ERF estimates as jobs of this session, cached fits, stored cards (Receptive Field) |
| `runs` | evaluations, failure cases, Table 4 and the downscale simulation (metrics pages) |
| `fcam` | decoders, the view of one image, decoder fits in the background (F-CAM) |
| `sanity` | cascading randomisation of a copy of the network (Sanity Checks) |
| `uploads` | a visitor's own data: a zip unpacked into a folder of their session's |

Job control itself (status, progress, stop, the server-wide limit) is Streamlit-free, in
`explorer.jobs`; figures and the texts that explain them are in `explorer.views`.
"""

from explorer.fcam.decoder import backbones_with_shipped_decoders
from explorer.metrics.failures import FAILURE_TYPES
from explorer.runtime import tune_allocator
from explorer.ui.erf import (
    ERF_BATCH,
    ERF_IMAGES,
    ERF_MODE_LABELS,
    ERF_SOURCES,
    continue_erf,
    erf_alternative_fit,
    erf_card,
    erf_comparison,
    erf_comparison_choices,
    erf_convergence,
    erf_fit,
    erf_job,
    folder_problem,
    folder_source,
    run_erf_job,
    start_erf,
    stop_erf,
    stored_erf_cards,
)
from explorer.ui.fcam import (
    FCAM_FIT_EPOCHS,
    FCAM_FIT_LIMIT,
    DecoderChoice,
    FcamView,
    active_decoders,
    available_upsamplers,
    best_decoder,
    card_settings_rows,
    dataset_problem,
    decoder_choices,
    evaluation_thresholds,
    fallback_decoder_backbone,
    fcam_job,
    fcam_view,
    largest_box,
    start_fcam_fit,
    steps_per_epoch,
    stop_fcam_fit,
    use_decoder,
    value_histograms,
)
from explorer.ui.lesson import smoothing_lesson
from explorer.ui.live import LAB_KEY, LIVE_KEY, adopt_released_sigma, live_lab, live_overlay_grid
from explorer.ui.loading import NETWORK_LOCK, load_cached_backbone
from explorer.ui.maps import (
    DEFAULT_METHODS,
    RELU_LABELS,
    SMOOTHING,
    STRIP_METHODS,
    TILES_PER_LINE,
    GridResult,
    approve_slow_methods,
    available_methods,
    cam_unavailable_reason,
    cost_notes,
    export_settings,
    faithfulness_curves,
    fused_layercam_tile,
    grid,
    grid_npz,
    heatmap_chart,
    histogram_chart,
    histograms,
    layer_advice,
    layer_strip,
    method_name,
    pixel_map,
    pixel_table,
    sheet_png,
    show_overlay_grid,
    timing_rows,
    upsampler_label,
)
from explorer.ui.runs import (
    DOWNSCALE_DEFAULT,
    DOWNSCALE_IMAGES,
    FAITHFULNESS_NOTE,
    choose_combo,
    choose_combos,
    choose_run,
    combo_label,
    confidence_grid,
    confidence_table,
    confidence_warnings,
    decoder_test_rows,
    downscale_curves,
    evaluation_form,
    failure_counts,
    failure_tiles,
    failure_types,
    open_in_compare,
    run_curves,
    run_records,
    summary_table,
)
from explorer.ui.sanity import (
    SANITY_METHODS,
    sanity_curves,
    sanity_result,
    sanity_strip,
    sanity_verdicts,
)
from explorer.ui.sidebar import (
    PAGE_GUIDE,
    RANDOM_WARNING,
    UPLOAD_TYPES,
    ImageChoice,
    Selection,
    context_banner,
    draw_sidebar,
    forget_selection,
    request_backbone,
    require_classifier,
    selection,
    shape_text,
)
from explorer.ui.sigma import (
    MANUAL_LABEL,
    SIGMA_MAX,
    SIGMA_MIN,
    SigmaCurve,
    shared_sigma,
    sigma_controls,
    sigma_correlation,
    sigma_on_slider,
    split_sigma_curve,
    use_sigma,
    use_sigmas,
    use_stored_sigma,
)
from explorer.ui.uploads import data_uploader
from explorer.ui.widgets import (
    attempt,
    checkbox,
    compact_top,
    multiselect,
    number_input,
    persistent,
    radio,
    remember,
    remembered,
    requested,
    selectbox,
    set_widget,
    slider,
    text_input,
    toggle,
)

tune_allocator()  # the app's server process: reuse freed activations instead of re-faulting them

__all__ = [
    "compact_top",
    "LAB_KEY", "LIVE_KEY", "adopt_released_sigma", "live_lab", "live_overlay_grid",
    "ERF_BATCH", "ERF_IMAGES", "ERF_MODE_LABELS", "ERF_SOURCES", "continue_erf", "erf_alternative_fit", "erf_card",
    "erf_comparison", "erf_comparison_choices", "erf_convergence", "erf_fit", "erf_job", "folder_problem",
    "folder_source", "run_erf_job", "start_erf", "stop_erf", "stored_erf_cards",
    "FCAM_FIT_EPOCHS", "FCAM_FIT_LIMIT", "DecoderChoice", "FcamView", "active_decoders", "available_upsamplers",
    "backbones_with_shipped_decoders",
    "best_decoder", "evaluation_thresholds", "fallback_decoder_backbone",
    "card_settings_rows", "dataset_problem", "decoder_choices", "fcam_job", "fcam_view", "largest_box",
    "start_fcam_fit", "steps_per_epoch", "stop_fcam_fit", "use_decoder", "value_histograms",
    "NETWORK_LOCK", "load_cached_backbone", "smoothing_lesson",
    "DEFAULT_METHODS", "RELU_LABELS", "SMOOTHING", "STRIP_METHODS", "TILES_PER_LINE", "fused_layercam_tile", "layer_strip",
    "layer_advice",
    "GridResult", "approve_slow_methods", "available_methods",
    "cam_unavailable_reason", "cost_notes", "grid", "export_settings", "faithfulness_curves", "grid_npz", "histograms",
    "heatmap_chart", "histogram_chart", "method_name", "pixel_map",
    "pixel_table", "sheet_png", "show_overlay_grid", "timing_rows", "upsampler_label",
    "DOWNSCALE_DEFAULT", "DOWNSCALE_IMAGES", "FAITHFULNESS_NOTE",
    "FAILURE_TYPES", "choose_combo", "choose_combos", "choose_run", "combo_label", "confidence_grid",
    "confidence_table", "confidence_warnings",
    "downscale_curves", "evaluation_form", "failure_counts", "failure_tiles", "failure_types",
    "open_in_compare", "run_curves", "run_records",
    "decoder_test_rows",
    "summary_table",
    "SANITY_METHODS", "sanity_curves", "sanity_result", "sanity_strip", "sanity_verdicts",
    "PAGE_GUIDE", "RANDOM_WARNING", "UPLOAD_TYPES", "ImageChoice", "Selection", "context_banner", "draw_sidebar",
    "forget_selection", "request_backbone", "require_classifier",
    "selection",
    "shape_text",
    "MANUAL_LABEL", "SIGMA_MAX", "SIGMA_MIN", "SigmaCurve", "shared_sigma", "sigma_controls", "sigma_correlation",
    "sigma_on_slider", "split_sigma_curve", "use_sigma", "use_sigmas", "use_stored_sigma",
    "data_uploader",
    "attempt", "checkbox", "multiselect", "number_input", "persistent", "radio", "remember", "remembered", "requested",
    "selectbox", "set_widget", "slider", "text_input", "toggle",
]
