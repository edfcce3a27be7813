"""F-CAM (shared/papers/f-cam.txt): a trainable U-Net decoder on a frozen classifier that turns
its coarse CAM into a full-resolution map, trained from the CAM's own pseudo-labels.

    decoder = load_decoder(decoder_path("synthetic_lite0"), backbone)
    cap = explorer.capture(backbone, batch, targets, taps=decoder.taps)   # the one forward
    fcam = decoder.foreground(cap.features, backbone.input_size)           # B x H x W in [0, 1]

`explorer.grid_maps(..., decoders={"cam": decoder})` does both in the pipeline, and the F-CAM
is the upsampler "fcam" of the Compare page, the evaluate command and the metrics pages.
"""

from explorer.fcam.decoder import (
    FCAM_DIR,
    DecoderBlock,
    FcamDecoder,
    FcamError,
    UNetDecoder,
    build_decoder,
    decoder_path,
    decoder_spec,
    load_decoder,
    parameter_count,
    read_decoder_card,
    shipped_decoders,
)
from explorer.fcam.losses import barrier_t, crf_loss, crf_loss_dense, log_barrier, partial_cross_entropy, size_loss
from explorer.fcam.seeds import IGNORE, SeedConfig, draw_seeds, otsu_thresholds, sampling_regions, seeds_from_cam

__all__ = [
    "FCAM_DIR", "DecoderBlock", "FcamDecoder", "FcamError", "UNetDecoder", "build_decoder", "decoder_path",
    "decoder_spec", "load_decoder", "parameter_count", "read_decoder_card", "shipped_decoders",
    "barrier_t", "crf_loss", "crf_loss_dense", "log_barrier", "partial_cross_entropy", "size_loss",
    "IGNORE", "SeedConfig", "draw_seeds", "otsu_thresholds", "sampling_regions", "seeds_from_cam",
]
