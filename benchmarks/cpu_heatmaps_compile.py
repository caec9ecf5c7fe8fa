"""Idle-machine CPU heatmap comparison on one band of a real image (84 patches of 256 px, stride 70,
DenseNet-121 TF-SAME, random weights, 2 threads): the reference scheme (float64 patches on the host,
3 channels, batch 100) vs mammokit eager vs mammokit with torch.compile. Run:
``.venv/bin/python -m benchmarks.cpu_heatmaps_compile``; prints the figures and writes
/tmp/cpu_cmp.json (the committed result is benchmarks/results/cpu-2core-heatmaps-idle.json)."""
import json
import os
import random
import time

import numpy as np
import torch

from mammokit.data.images import read_image
from mammokit.heatmaps import compute_heatmaps, patch_starts
from mammokit.transforms import standardize_image
from mammokit.models.patch import PatchDenseNet121
from mammokit.preprocess.pipeline import preprocess_image
torch.set_num_threads(2)
img = read_image(os.path.join(os.environ.get("MAMMOKIT_REAL_DATA", "../shared/data/real"), "1_R_CC.png"))
res = preprocess_image(img, "R-CC", "NO", preset="paper")
crop = np.ascontiguousarray(res.cropped[:, ::-1])
band = standardize_image(crop[900:1506].astype(np.float32)).numpy()  # 606 rows -> 6 patch rows
torch.manual_seed(0)
m1 = PatchDenseNet121(num_classes=4, in_chans=1, tf_same_padding=True).eval()
m3 = PatchDenseNet121(num_classes=4, in_chans=3, tf_same_padding=True).eval()
m3.load_state_dict({k: (v.repeat(1, 3, 1, 1) / 3 if k == "features.conv0.weight" else v) for k, v in m1.state_dict().items()})
H, W = band.shape
ys = patch_starts(H, 256, 70, random.Random(0)); xs = patch_starts(W, 256, 70, random.Random(1))
n = len(ys) * len(xs)
def reference():
    with torch.inference_mode():
        patches = np.stack([band[y:y+256, x:x+256] for y in ys for x in xs]).astype(np.float64)
        out = []
        for i in range(0, len(patches), 100):
            b = torch.from_numpy(patches[i:i+100]).float()[:, None].repeat(1, 3, 1, 1)
            out.append(torch.softmax(m3(b), 1))
        return torch.cat(out)
def ours(model, static=False, bs=32):
    return compute_heatmaps(torch.from_numpy(band), model, 256, 70, batch_size=bs, device="cpu", dtype="fp32", static_batch=static)
rows = {}
def timeit(name, f, reps=2):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    rows[name] = n / min(ts)
    print(f"{name}: {rows[name]:.2f} patches/s ({n} patches)", flush=True)
timeit("reference scheme", reference)
timeit("mammokit eager", lambda: ours(m1))
mc = PatchDenseNet121(num_classes=4, in_chans=1, tf_same_padding=True).eval(); mc.load_state_dict(m1.state_dict())
mc = mc.to(memory_format=torch.channels_last)
t = time.perf_counter(); cm = torch.compile(mc); ours(cm, True); print(f"compile {time.perf_counter()-t:.0f} s", flush=True)
timeit("mammokit compiled (channels_last, static batch)", lambda: ours(cm, True))
a = ours(m1); b = ours(cm, True)
print("max abs diff compiled vs eager heatmaps:", float((a - b).abs().max()))
json.dump({"patches": n, "patches_per_s": rows, "threads": 2, "max_abs_diff_compiled": float((a-b).abs().max())}, open("/tmp/cpu_cmp.json", "w"), indent=1)
