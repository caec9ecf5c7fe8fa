#!/usr/bin/env bash
# One-shot GPU check of mammokit's speed and accuracy (run from the repository root on a CUDA
# machine). Everything it produces goes under $OUT (default ./gpu_out):
#   env.txt            python / torch / CUDA / GPU versions (nvidia-smi -L, read-only queries)
#   pytest.log         GPU unit tests (tests selected by -k "cuda or gpu"), if any
#   bench.log          the benchmark's progress and table
#   *.json             benchmark results: <gpu-name>-paper.json, <gpu-name>-small.json
# Budget: about 5-6 minutes of wall time (hard caps below: 90 s tests + 450 s bench).
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
timeout 90 "$PY" -m pytest -q -rs -k "cuda or gpu" -p no:cacheprovider tests >"$OUT/pytest.log" 2>&1
rc=$?; fi
case $rc in
  0) echo "== GPU unit tests: passed";;
  5) echo "== GPU unit tests: none collected";;
  124) echo "!! GPU unit tests: timed out (90 s)";;
  *) echo "!! GPU unit tests: FAILED (rc $rc), see $OUT/pytest.log"; tail -20 "$OUT/pytest.log";;
esac

# 3. Benchmark: paper + small presets, lever ablation (first preset), compiled patch model (one
# compile, ~47 s, reused by the heatmap, ablation and pipeline stages), 100-exam stream.
# --time-budget makes later stages skip (recorded in the JSON) rather than overrun.
RESULTS="$OUT/results"
mkdir -p "$RESULTS"
timeout "${BENCH_TIMEOUT:-450}" "$PY" -m mammokit.bench --device cuda --preset paper --preset small --ablation \
  --compile --compile-targets patch --exams 100 --repeats 3 --warmup 1 --ablation-patches 2048 \
  --time-budget "${BENCH_BUDGET:-360}" -o "$RESULTS/bench-cuda.json" 2>&1 | tee "$OUT/bench.log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || echo "!! bench exited with rc $rc (124 = timed out)"
# Split into the per-preset files of benchmarks/results/<device-name>-<preset>.json as well.
"$PY" - "$RESULTS/bench-cuda.json" "$RESULTS" <<'PYEOF' || true
import json, sys
from pathlib import Path
src, out = Path(sys.argv[1]), Path(sys.argv[2])
if src.exists():
    doc = json.loads(src.read_text())
    name = doc["environment"]["device"]["device_name"]
    for preset, res in doc["presets"].items():
        p = out / f"{name}-{preset}.json"
        p.write_text(json.dumps({**doc, "presets": {preset: res}}, indent=1) + "\n")
        print("wrote", p)
PYEOF
echo "== gpu_check done in $(( $(date +%s) - T0 )) s; results in $OUT"
ls -la "$OUT" "$RESULTS"
