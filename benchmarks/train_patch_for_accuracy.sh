#!/usr/bin/env bash
# The trained patch classifier behind the GPU accuracy check (benchmarks/README.md): random
# DenseNet weights make a bf16/fp16-vs-fp32 comparison meaningless, so the check runs a briefly
# trained one. On the 2-core CPU: ~10 minutes (4 epochs of 480 patches, batch 8).
#   bash benchmarks/train_patch_for_accuracy.sh [WORK_DIR]    -> runs/patch_cpu/best.safetensors
# then on the GPU machine (carry runs/patch_cpu):
#   PATCH_CKPT=runs/patch_cpu/best.safetensors STAGES=heatmaps,pipeline bash benchmarks/gpu_check.sh
set -euo pipefail
W="${1:-/tmp/mammokit-patch-accuracy}"
PY="${PYTHON:-.venv/bin/python}"
rm -rf "$W"; mkdir -p "$W"
"$PY" -m mammokit -q synth "$W/data" --exams 10 --scale 1.0 --seed 1 --cancer-rate 0.6 --benign-rate 0.6 --workers 2
"$PY" -m mammokit -q preprocess "$W/data/manifest.csv" --out "$W/work" --preset paper --workers 2
# Validation: the last exam with a visible malignant mass (10 exams are too few for the
# generator's patient split to put a visible lesion in the validation set).
"$PY" - "$W/data/labels.csv" "$W/labels.csv" <<'PYEOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
visible = [r["exam_id"] for r in rows
           if any("malignant:mass" in f and "occult" not in f for f in r["finding_types"].split(";"))]
for r in rows:
    r["split"] = "val" if r["exam_id"] == visible[-1] else "train"
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
PYEOF
"$PY" -m mammokit train-patch "$W/work" --masks "$W/data/masks" --labels "$W/labels.csv" \
  --arch densenet121_patch --patches-per-class 160 --val-patches-per-class 24 --epochs 4 --batch-size 8 \
  --out "$W/run" --device cpu
mkdir -p runs/patch_cpu
cp "$W/run/best.safetensors" runs/patch_cpu/best.safetensors
echo "wrote runs/patch_cpu/best.safetensors"
