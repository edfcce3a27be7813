"""Print an evaluation's summary as the Markdown table the README shows.

    python docs/evaluation_table.py checkpoints/evaluations/synthetic_lite0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LABELS = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "xgradcam": "XGrad-CAM",
          "layercam": "LayerCAM", "extendedcam": "Extended-CAM (signed)", "reference_object": "reference: object mask",
          "reference_part": "reference: head mask only"}
COLUMNS = (("max_box_acc", "MaxBoxAcc"), ("max_box_acc_v2", "MaxBoxAccV2"), ("pxap", "PxAP"),
           ("top1_loc", "top-1 loc"), ("average_drop", "AD %"), ("increase", "Inc %"),
           ("average_drop_relative", "AD % rel."), ("increase_relative", "Inc % rel."))


def main() -> int:
    summary = json.loads((Path(sys.argv[1]) / "summary.json").read_text())
    print(f"| method | upsampler | {' | '.join(label for _, label in COLUMNS)} |")
    print("|" + "---|" * (len(COLUMNS) + 2))
    for row in summary["rows"]:
        up = {"fcam": "**F-CAM decoder**", "exact": "(the mask itself)"}.get(row["upsampler"], row["upsampler"])
        cells = [f"{row[key]:.1f}" if key in row else "" for key, _ in COLUMNS]
        print(f"| {LABELS.get(row['method'], row['method'])} | {up} | {' | '.join(cells)} |")
    print(f"\n{summary['num_images']} images, classification accuracy {summary['classification_accuracy']:.1f} %, "
          f"sigma {summary['config']['sigma']}, {summary['seconds_this_call']:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
