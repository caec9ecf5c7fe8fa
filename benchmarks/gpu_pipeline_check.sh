#!/usr/bin/env bash
# GPU smoke check of the CUDA code paths that unit tests cannot reach here (no GPU in CI): every
# stage through the CLI on a small synthetic set, on CUDA (bf16 autocast, channels_last,
# DataLoader workers with pinned memory, compiled heatmaps). Data in /tmp; logs under $OUT.
set -euo pipefail
OUT="${OUT:-./gpu_out}"; mkdir -p "$OUT"
W=/tmp/mk_gpu; rm -rf "$W"; mkdir -p "$W"
PY="${PYTHON:-python3}"
M="$PY -m mammokit"
step() { echo "== $* ($(date +%T))"; }
step synth;       $M synth "$W/data" --exams "${EXAMS:-24}" --seed 0 --scale "${SCALE:-0.25}" --workers 12
step preprocess;  $M preprocess "$W/data/manifest.csv" --out "$W/work" --preset "${PRESET:-small}" --workers 12
step train-patch; $M train-patch "$W/work" --masks "$W/data/masks" --labels "$W/data/labels.csv" --epochs "${EPOCHS:-2}" --device "${DEVICE:-cuda}" --out "$W/runs/patch"
step heatmaps;    $M heatmaps "$W/work" --patch-model "$W/runs/patch/best.safetensors" --device "${DEVICE:-cuda}" ${COMPILE---compile}
step birads;      $M train "$W/work" --labels "$W/data/labels.csv" --task birads --variant view-wise --epochs "${EPOCHS:-2}" --device "${DEVICE:-cuda}" --workers 4 --out "$W/runs/birads"
step cancer-ih;   $M train "$W/work" --labels "$W/data/labels.csv" --task cancer --variant view-wise --heatmaps --init "$W/runs/birads" --epochs "${EPOCHS:-2}" --ensemble 2 --device "${DEVICE:-cuda}" --workers 4 --out "$W/runs/ih"
step predict;     $M predict "$W/work" --model "$W/runs/ih/ensemble.safetensors" --tta 10 --device "${DEVICE:-cuda}" -o "$OUT/predictions.csv"
step predict-fp32; $M predict "$W/work" --model "$W/runs/ih/ensemble.safetensors" --tta 10 --device "${DEVICE:-cuda}" --dtype fp32 -o "$OUT/predictions_fp32.csv"
cp "$W/runs/ih/member0/metrics.csv" "$OUT/" 2>/dev/null || true
"$PY" - "$OUT" <<'PY'
import csv, sys
a = list(csv.DictReader(open(f"{sys.argv[1]}/predictions.csv")))
b = list(csv.DictReader(open(f"{sys.argv[1]}/predictions_fp32.csv")))
d = max(abs(float(x[c]) - float(y[c])) for x, y in zip(a, b) for c in x if c != "exam_id")
print(f"bf16 vs fp32 predictions: {len(a)} exams, max abs diff {d:.5f}")
PY
step done
