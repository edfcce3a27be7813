#!/usr/bin/env bash
# The synthetic_vgg part of the Evidence section (Extended-CAM's equation axis), resumable: each
# step is skipped when its output is final, and `evaluate` resumes a killed run chunk by chunk.
#   nohup bash docs/evidence_vgg.sh > logs/evidence_vgg.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
X="$PY -m explorer"
EVAL=checkpoints/evaluations
DATA=$($PY -c "from explorer.datasets.synthetic import ensure_synthetic; print(ensure_synthetic())")
grep -qs '"version": 2' checkpoints/synthetic_vgg.json || $X train-classifier --arch synthetic_vgg --threads 2

# The ERF is fitted on validation images (the first 64 by path), never on the test split it is scored on.
mkdir -p logs/erf-images-val
find "$DATA/images/val" -name '*.jpg' | sort | sed -n '1,64p' | while read -r f; do cp -n "$f" logs/erf-images-val/; done
[ -f checkpoints/erf/synthetic_vgg__conv5.json ] || \
  $X erf --backbone synthetic_vgg --layer conv5 --images 64 --source folder:logs/erf-images-val

# Table 1's baselines (no CAM: the head is not GAP + linear) and Extended-CAM, bilinear and Gaussian
# (sigma: the fitted ERF), controls, references, intervals: Tables 2-3 from the same run.
[ -f $EVAL/synthetic_vgg/summary.json ] || \
  $X evaluate --dataset synthetic --backbone synthetic_vgg --layer conv5 --limit 300 \
     --methods gradcam,gradcampp,smoothgradcampp,xgradcam,layercam,extendedcam --out $EVAL/synthetic_vgg

# The same over the whole test split (1,000 images): Tables 2-3, the controls and the oracles.
[ -f $EVAL/synthetic_vgg_test1000/summary.json ] || \
  $X evaluate --dataset synthetic --backbone synthetic_vgg \
     --methods gradcam,gradcampp,smoothgradcampp,xgradcam,layercam,extendedcam --upsampler bilinear,gaussian \
     --out $EVAL/synthetic_vgg_test1000

# Table 4 over a sigma sweep, whole test split (the controls do not depend on sigma: they are in the run above).
mkdir -p $EVAL/table4
for s in 10 20 40 80; do
  [ -f $EVAL/table4/synthetic_vgg-sigma$s/summary.json ] || \
    $X evaluate --dataset synthetic --backbone synthetic_vgg --layer conv5 --no-controls \
       --methods gradcam,gradcampp,extendedcam --upsampler gaussian --sigma $s,$s --out $EVAL/table4/synthetic_vgg-sigma$s
done

# Section 5: r(Grad-CAM + bilinear, Extended-CAM + Gaussian(sigma)) against sigma over the whole test split.
mkdir -p $EVAL/smoothing
[ -f $EVAL/smoothing/synthetic_vgg__conv5.json ] || \
  $X smoothing-curve --backbone synthetic_vgg --layer conv5 --out $EVAL/smoothing/synthetic_vgg__conv5.json
echo "synthetic_vgg evidence complete $(date)"
