#!/usr/bin/env bash
# One-shot GPU check of mammokit's speed and accuracy (run from the repository root on a CUDA
# machine). Everything it produces goes under $OUT (default ./gpu_out):
#   env.txt            python / torch / CUDA / GPU versions (nvidia-smi -L, read-only queries)
#   pytest.log         GPU unit tests (tests selected by -k "cuda or gpu"), if any
#   bench.log          the benchmark's progress and table
#   patch_training/    logs + metrics of the briefly trained patch classifier (accuracy check)
#   results/bench-cuda.json  benchmark results (python -m benchmarks.bench)
#   run/               step 5: `mammokit run` over >= 200 exams (exams/s, GPU utilisation), torchrun scaling
# Budget: about 7-8 minutes of wall time for steps 1-4 (step 5: up to 2 x RUN_TIMEOUT more; RUN=0 skips it) (hard caps below: 90 s tests, ~440 s patch training, 450 s bench;
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
# 5. From raw images to results over >= 200 exams with `mammokit run` (preprocess, heatmaps, both
# view-wise models with 10 TTA), GPU utilisation sampled every 0.5 s (nvidia-smi, read-only query);
# then, with 2+ GPUs, the same job on every GPU with torchrun (one shard per rank), outputs
# compared byte for byte with the single-process run. RUN_EXAMS sizes it; RUN=0 skips it.
# The breast-level models are random-init view-wise models (speed does not depend on the weights);
# the patch classifier is the one trained in step 3 when there is one.
if [ "${RUN:-1}" = 1 ]; then
  W5="${SCRATCH:-/tmp/mammokit-gpu-check}/run"
  rm -rf "$W5"; mkdir -p "$W5" "$OUT/run"
  NPROC=$(nproc 2>/dev/null || echo 4)
  NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
  timeout 240 "$PY" -m mammokit -q synth "$W5/data" --exams "${RUN_EXAMS:-200}" --scale "${RUN_SCALE:-1.0}" --seed 5 \
    --workers "$NPROC" >"$OUT/run/synth.log" 2>&1 || echo "!! synth for the run check failed (see $OUT/run/synth.log)"
  "$PY" - "$W5" <<'PYEOF'
import sys, torch
from mammokit.models import create_model, save_checkpoint
for c in (1, 3):
    torch.manual_seed(c)
    save_checkpoint(f"{sys.argv[1]}/vw{c}.safetensors", create_model("view_wise", in_channels=c), arch="view_wise",
                    model_args={"in_channels": c}, preset="paper")
PYEOF
  PATCH="${CKPT_ARGS[1]:-}"
  if [ -z "$PATCH" ]; then
    "$PY" -c "import torch; from mammokit.models import create_model, save_checkpoint; torch.manual_seed(0); save_checkpoint('$W5/patch.safetensors', create_model('densenet121_patch', num_classes=3), arch='densenet121_patch', model_args={'num_classes': 3}, preset='paper')"
    PATCH="$W5/patch.safetensors"
  fi
  RUN_ARGS=(run "$W5/data/manifest.csv" --model "$W5/vw3.safetensors" --model "$W5/vw1.safetensors"
            --patch-model "$PATCH" --preset paper --tta 10 --workers "$NPROC" --device cuda)
  for MODE in single multi; do
    [ "$MODE" = multi ] && [ "$NGPU" -lt 2 ] && { echo "== run check: $NGPU GPU(s): no multi-GPU scaling"; break; }
    nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader -lms 500 >"$OUT/run/gpu_util_$MODE.csv" 2>/dev/null &
    SMI=$!
    T5=$(date +%s.%N)
    if [ "$MODE" = single ]; then
      timeout "${RUN_TIMEOUT:-600}" "$PY" -m mammokit "${RUN_ARGS[@]}" --out "$W5/out_single" >"$OUT/run/single.log" 2>&1
    else
      timeout "${RUN_TIMEOUT:-600}" "$PY" -m torch.distributed.run --nproc_per_node "$NGPU" -m mammokit "${RUN_ARGS[@]}" \
        --out "$W5/out_multi" >"$OUT/run/multi.log" 2>&1
    fi
    rc=$?
    T6=$(date +%s.%N)
    kill "$SMI" 2>/dev/null
    "$PY" - "$MODE" "$rc" "$T5" "$T6" "$OUT/run/gpu_util_$MODE.csv" "$W5" "$NGPU" <<'PYEOF' | tee -a "$OUT/run/summary.txt"
import csv, sys
from pathlib import Path
mode, rc, t0, t1, util, w, ngpu = sys.argv[1:]
out = Path(w) / f"out_{mode}"
rows = list(csv.DictReader(open(out / "predictions.csv"))) if (out / "predictions.csv").is_file() else []
secs = float(t1) - float(t0)
u = [float(r[1].strip().rstrip(" %")) for r in csv.reader(open(util)) if len(r) > 1] if Path(util).is_file() else []
print(f"run {mode}: rc {rc}, {len(rows)} exams in {secs:.1f} s = {len(rows) / secs:.2f} exams/s (raw images to "
      f"predictions, start-up included); GPU utilisation mean {sum(u) / max(len(u), 1):.0f} % over {len(u)} samples"
      + (f" ({ngpu} GPUs)" if mode == "multi" else ""))
if mode == "multi":
    single = Path(w) / "out_single"
    same = all((single / n).read_bytes() == (out / n).read_bytes()
               for n in ("predictions.csv", "predictions.meta.json", "exams.json"))
    print(f"run multi vs single: predictions.csv, predictions.meta.json, exams.json identical: {same}")
PYEOF
  done
fi
echo "== gpu_check done in $(( $(date +%s) - T0 )) s; results in $OUT"
ls -la "$OUT" "$RESULTS"
