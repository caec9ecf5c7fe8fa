#!/usr/bin/env bash
# One-shot GPU check of mammokit's speed and accuracy (run from the repository root on a CUDA
# machine). Everything it produces goes under $OUT (default ./gpu_out):
#   env.txt            python / torch / CUDA / GPU versions (nvidia-smi -L, read-only queries)
#   pytest.log         GPU unit tests (tests selected by -k "cuda or gpu"), if any
#   bench.log          the benchmark's progress and table
#   patch_training/    logs + metrics of the briefly trained patch classifier (accuracy check)
#   results/bench-cuda.json  benchmark results (python -m benchmarks.bench)
# Budget: about 7-8 minutes of wall time (hard caps below: 90 s tests, ~440 s patch training, 450 s bench;
# typical: 60 s, 150 s, 250 s).
# It never changes GPU settings (no nvidia-smi -pm/-lgc/-mig...) and uses no managed memory.
set -u
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
T0=$(date +%s)
echo "== mammokit gpu_check: OUT=$OUT"

# 1. Dependencies (assumed present; say clearly what is missing).
if ! "$PY" -c "import torch, torchvision, cv2, h5py, safetensors, sklearn, scipy, pydicom" 2>"$OUT/import_error.txt"; then
  echo "!! MISSING PYTHON PACKAGES (see $OUT/import_error.txt):"; cat "$OUT/import_error.txt"
  echo "!! the checks below will probably fail"
fi
if ! "$PY" -c "import mammokit" 2>/dev/null; then
  echo "== installing mammokit (editable, no dependencies)"
  "$PY" -m pip install -q -e . --no-deps >"$OUT/pip.log" 2>&1 || { echo "!! pip install failed (see $OUT/pip.log); using PYTHONPATH=src"; export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"; }
fi
"$PY" - >"$OUT/env.txt" 2>&1 <<'PYEOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", torch.cuda.get_device_name(0), f"{p.total_memory / 2**30:.1f} GiB", f"sm_{p.major}{p.minor}")
PYEOF
nvidia-smi -L >>"$OUT/env.txt" 2>&1 || true
cat "$OUT/env.txt"

# 2. GPU unit tests, if any (exit code 5 = none collected).
if [ "${SKIP_GPU_TESTS:-0}" = 1 ]; then rc=5; else
timeout 90 "$PY" -m pytest -q -rs -k "cuda or gpu" -p no:cacheprovider --continue-on-collection-errors tests >"$OUT/pytest.log" 2>&1
rc=$?; fi
case $rc in
  0) echo "== GPU unit tests: passed";;
  5) echo "== GPU unit tests: none collected";;
  124) echo "!! GPU unit tests: timed out (90 s)";;
  *) echo "!! GPU unit tests: FAILED (rc $rc), see $OUT/pytest.log"; tail -20 "$OUT/pytest.log";;
esac

# 3. A briefly trained patch classifier for the accuracy comparison (random weights make it
# meaningless: their softmax outputs are chaotic in the inputs). Synthetic exams at full
# resolution -> preprocess -> train-patch (DenseNet-121, bf16), all in a scratch folder; only the
# training log and metrics come back. Skipped with TRAIN_PATCH=0 (the bench then uses random weights).
CKPT_ARGS=()
if [ -n "${PATCH_CKPT:-}" ]; then  # a trained patch classifier given: no training here
  CKPT_ARGS=(--patch-checkpoint "$PATCH_CKPT")
elif [ "${TRAIN_PATCH:-1}" = 1 ]; then
  W="${SCRATCH:-/tmp/mammokit-gpu-check}"
  rm -rf "$W"; mkdir -p "$W" "$OUT/patch_training"
  T1=$(date +%s)
  NPROC=$(nproc 2>/dev/null || echo 4)
  if timeout 150 "$PY" -m mammokit -q synth "$W/data" --exams "${TRAIN_EXAMS:-24}" --scale 1.0 --seed 0 \
       --cancer-rate 0.5 --benign-rate 0.5 --workers "$NPROC" >"$OUT/patch_training/synth.log" 2>&1 \
     && timeout 90 "$PY" -m mammokit -q preprocess "$W/data/manifest.csv" --out "$W/work" --preset paper \
       --workers "$NPROC" >"$OUT/patch_training/preprocess.log" 2>&1 \
     && timeout "${TRAIN_TIMEOUT:-200}" "$PY" -m mammokit train-patch "$W/work" --masks "$W/data/masks" \
       --labels "$W/data/labels.csv" --arch densenet121_patch --patches-per-class "${TRAIN_PATCHES:-1500}" \
       --val-patches-per-class 200 --epochs "${TRAIN_EPOCHS:-3}" --batch-size "${TRAIN_BATCH:-64}" --out "$W/run" --device "${TRAIN_DEVICE:-cuda}" \
       >"$OUT/patch_training/train.log" 2>&1 \
     && [ -f "$W/run/best.safetensors" ]; then
    cp "$W/run/metrics.csv" "$W/run/config.json" "$OUT/patch_training/" 2>/dev/null || true
    CKPT_ARGS=(--patch-checkpoint "$W/run/best.safetensors")
    echo "== patch classifier trained in $(( $(date +%s) - T1 )) s"; tail -3 "$OUT/patch_training/train.log"
  else
    echo "!! patch training failed after $(( $(date +%s) - T1 )) s (logs in $OUT/patch_training); bench uses random weights"
    tail -n 5 "$OUT"/patch_training/*.log
  fi
fi

# 4. Benchmark through the library functions the CLI calls (python -m benchmarks.bench): paper
# preset, heatmaps compiled, fp16 beside bf16, both models with 10 TTA, `mammokit run` over the
# exams, one training epoch. EXAMS sizes the data set (synthesis runs on every CPU core first).
RESULTS="$OUT/results"
mkdir -p "$RESULTS"
CKPT_ARGS2=()
[ ${#CKPT_ARGS[@]} -gt 0 ] && CKPT_ARGS2=(--patch-model "${CKPT_ARGS[1]}")
timeout "${BENCH_TIMEOUT:-450}" "$PY" -m benchmarks.bench --device cuda --preset "${PRESET:-paper}" \
  --stages "${STAGES:-heatmaps,predict,pipeline,train}" --compile on --exams "${EXAMS:-100}" --repeats 3 --warmup 1 \
  --compare-dtypes "${COMPARE_DTYPES:-fp16,bf16}" "${CKPT_ARGS2[@]}" -o "$RESULTS/bench-cuda.json" 2>&1 | tee "$OUT/bench.log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || echo "!! bench exited with rc $rc (124 = timed out)"
echo "== gpu_check done in $(( $(date +%s) - T0 )) s; results in $OUT"
ls -la "$OUT" "$RESULTS"
