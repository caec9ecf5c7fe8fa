"""The prediction worker: models loaded once, studies predicted in batches, results written.

One thread. Each round it moves complete studies (four views, or ``study_timeout`` seconds since
their last instance) to ``queued``, claims up to ``batch_studies`` of them, decodes their views,
and runs :func:`mammokit.inference.exam.predict_exams_in_memory` on all of them at once (their
patches share batches, exams with the same views share forward passes). Per study it writes
``DIR/results/<StudyUID>/v<N>/``:

    sr.dcm                       TID 1500 SR (version N references versions 1..N-1)
    seg_<view>.dcm               fractional SEG per view used
    overlay_<view>_<kind>.png    RGBA heatmap overlay for the viewer (kind malignant / benign)
    result.json                  what the API shows

and commits ``done`` with the prediction in one transaction (:meth:`Store.finish`). The version
folder is written under a temporary name and renamed, so a crash leaves either nothing or a
whole folder of an uncommitted version, which the next attempt replaces.

A study whose images are all unusable fails with the reasons; a study that raises a
:class:`~mammokit.errors.MammokitError` fails with its message. Anything else is a bug: it is
logged with its traceback, the study fails with ``internal error``, and the worker goes on.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammokit.config import VIEWS
from mammokit.errors import MammokitError
from mammokit.serve.intake import choose_views
from mammokit.serve.store import Store, fsync_dir
from mammokit.utils.log import get_logger

log = get_logger(__name__)

__all__ = ["Worker", "WorkerSettings", "model_description"]


@dataclass
class WorkerSettings:
    study_timeout: float = 30.0
    batch_studies: int = 4
    tta: int = 10
    seed: int = 0
    ae_title: str = "MAMMOKIT"
    export: bool = False
    poll: float = 0.2


def model_description(models):
    """The SR's description of loaded :class:`~mammokit.inference.exam.ExamModels`."""
    from mammokit.serve.results import ModelDescription

    breast = [i for i in models.info if i["role"] == "breast"]
    name = "mammokit " + "+".join(dict.fromkeys(i["arch"] for i in breast))
    return ModelDescription(
        name=name[:64],
        checkpoints=tuple((f"{i['role']}{k if k else ''}", i["sha256"]) for k, i in enumerate(breast))
        + tuple((i["role"], i["sha256"]) for i in models.info if i["role"] == "patch"),
        settings=(("preset", models.preset.name),),
    )


class Worker:
    """Predicts queued studies of ``store`` with ``models`` (loaded once by the caller)."""

    def __init__(self, store: Store, models, settings: WorkerSettings) -> None:
        self.store, self.models, self.settings = store, models, settings
        base = model_description(models)
        from mammokit.serve.results import ModelDescription

        self.description = ModelDescription(base.name, base.version, base.checkpoints,
                                            base.settings + (("tta", str(settings.tta)), ("seed", str(settings.seed))))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0

    # ------------------------------------------------------------------ loop
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mammokit-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.run_once()
            except Exception:  # noqa: BLE001 - a bug must not stop the service; it is logged in full
                log.exception("worker: unexpected error")
                n = 0
            if n == 0:
                self._stop.wait(self.settings.poll)

    def complete(self, study_uid: str) -> bool:
        views = {r.view for r in self.store.instances(study_uid) if r.usable}
        return set(VIEWS) <= views

    def run_once(self) -> int:
        """One round: assemble, claim, predict; returns the number of studies handled."""
        for uid in self.store.due_studies(self.settings.study_timeout, self.complete):
            log.info("study %s queued", uid)
        uids = self.store.claim(self.settings.batch_studies)
        if uids:
            self._predict(uids)
            self.rounds += 1
        return len(uids)

    # ------------------------------------------------------------------ one batch
    def _predict(self, uids: list[str]) -> None:
        from mammokit.inference.exam import predict_exams_in_memory

        start = time.perf_counter()
        jobs = []
        for uid in uids:
            try:
                job = self._load(uid)
            except MammokitError as exc:
                self._fail(uid, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a bug: logged with its traceback, the study fails
                log.exception("study %s: unexpected error while reading it", uid)
                self._fail(uid, f"internal error: {type(exc).__name__}: {exc}")
                continue
            if job is not None:
                jobs.append(job)
        if not jobs:
            return
        try:
            results = predict_exams_in_memory([j["input"] for j in jobs], self.models, tta=self.settings.tta,
                                              seed=self.settings.seed)
        except MammokitError as exc:
            for j in jobs:
                self._fail(j["uid"], str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            log.exception("worker: prediction of %d studies failed", len(jobs))
            for j in jobs:
                self._fail(j["uid"], f"internal error: {type(exc).__name__}: {exc}")
            return
        seconds = (time.perf_counter() - start) / len(jobs)
        for job, result in zip(jobs, results):
            try:
                self._write(job, result, seconds)
            except Exception as exc:  # noqa: BLE001
                log.exception("study %s: writing the results failed", job["uid"])
                self._fail(job["uid"], f"internal error writing results: {type(exc).__name__}: {exc}")

    def _fail(self, uid: str, reason: str) -> None:
        log.warning("study %s failed: %s", uid, reason)
        self.store.set_status(uid, "failed", reason)

    def _load(self, uid: str) -> dict | None:
        import pydicom

        from mammokit.data.dicom import read_dicom_pixels
        from mammokit.inference.exam import ExamInput

        records = self.store.instances(uid)
        rejected = [(r, r.reason) for r in records if not r.usable]
        chosen, duplicates = choose_views(records)
        rejected += duplicates
        images, spacing, datasets, used = {}, {}, {}, {}
        for view, rec in chosen.items():
            try:
                images[view] = read_dicom_pixels(rec.path)
                ds = pydicom.dcmread(rec.path, stop_before_pixels=True)
            except MammokitError as exc:
                rejected.append((rec, f"unreadable: {exc}"))
                continue
            datasets[view], used[view] = ds, rec
            px = ds.get("ImagerPixelSpacing") or ds.get("PixelSpacing")
            try:
                spacing[view] = float(px[0]) if px else None
            except (TypeError, ValueError, IndexError):
                spacing[view] = None
        if not images:
            reasons = "; ".join(f"{_label(r)}: {why}" for r, why in rejected) or "no instances"
            self._fail(uid, f"no usable image ({reasons})")
            return None
        return {"uid": uid, "input": ExamInput(uid, images, spacing), "datasets": datasets, "used": used,
                "rejected": rejected}

    def _write(self, job: dict, result, seconds: float) -> None:
        import pydicom

        from mammokit.inference.exam import probabilities_by_breast
        from mammokit.serve.render import dicom_window, overlay_png
        from mammokit.serve.results import build_seg, build_sr

        uid = job["uid"]
        rejected = list(job["rejected"]) + [(job["used"][v], why) for v, why in result.rejected.items()]
        used = {v: job["used"][v] for v in result.views_used}
        if not used:
            reasons = "; ".join(f"{_label(r)}: {why}" for r, why in rejected)
            self._fail(uid, f"no usable image ({reasons})")
            return
        study = self.store.study(uid)
        version = int(study["version"]) + 1
        final = self.store.result_dir(uid, version)
        tmp = final.with_name(final.name + ".tmp")
        for d in (tmp, final):  # leftovers of an attempt that was not committed
            shutil.rmtree(d, ignore_errors=True)
        tmp.mkdir(parents=True)
        full = {v: pydicom.dcmread(r.path) for v, r in used.items()}
        previous = [pydicom.dcmread(self.store.result_dir(uid, k) / "sr.dcm") for k in range(1, version)
                    if (self.store.result_dir(uid, k) / "sr.dcm").is_file()]
        probs = probabilities_by_breast(result)
        sr = build_sr(full, probs, self.description, rejected=[(_label(r), why) for r, why in rejected],
                      previous=previous, ae_title=self.settings.ae_title, instance_number=version)
        sr.save_as(tmp / "sr.dcm", enforce_file_format=True)
        segs, windows = {}, {}
        seg_series = None
        for view, rec in used.items():
            maps = result.heatmap_on_original(view) if view in result.heatmaps else None
            if maps is not None:
                for k, kind in enumerate(("malignant", "benign")):
                    (tmp / f"overlay_{view}_{kind}.png").write_bytes(overlay_png(maps[k], kind))
                stored = maps[:, :, ::-1] if rec.mirrored else maps  # back to the stored orientation
                seg = build_seg(full[view], np.ascontiguousarray(stored), self.description, series_uid=seg_series,
                                instance_number=len(segs) + 1)
                seg_series = seg.SeriesInstanceUID
                seg.save_as(tmp / f"seg_{view}.dcm", enforce_file_format=True)
                segs[view] = f"seg_{view}.dcm"
            w = dicom_window(full[view])
            windows[view] = {"center": w[0], "width": w[1]} if w else None
        doc = {
            "version": version,
            "probabilities": {side: {k: (None if not math.isfinite(p) else round(p, 6)) for k, p in d.items()}
                              for side, d in probs.items()},
            "views_used": [{"view": v, "sop_uid": r.sop_uid, "mirrored": r.mirrored} for v, r in used.items()],
            "rejected": [{"sop_uid": r.sop_uid, "view": r.view, "modality": r.modality, "reason": why}
                         for r, why in rejected],
            "sr": "sr.dcm", "sr_sop_uid": str(sr.SOPInstanceUID), "segs": segs, "windows": windows,
            "model": {"name": self.description.name, "version": self.description.version_string,
                      "checkpoints": dict(self.description.checkpoints)},
            "seconds": round(seconds, 3), "research_use_only": True,
        }
        (tmp / "result.json").write_text(json.dumps(doc, indent=1))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        tmp.rename(final)
        fsync_dir(final.parent)
        committed = self.store.finish(uid, version, doc, sorted(r.sop_uid for r in used.values()), seconds,
                                      export=self.settings.export)
        fmt = lambda p: "-" if p is None else f"{p:.3f}"  # noqa: E731
        log.info("study %s predicted (v%d, views %s, %d rejected) in %.2f s: L malignant %s benign %s, "
                 "R malignant %s benign %s%s", uid, version, ",".join(used), len(rejected), seconds,
                 fmt(doc["probabilities"]["L"]["malignant"]), fmt(doc["probabilities"]["L"]["benign"]),
                 fmt(doc["probabilities"]["R"]["malignant"]), fmt(doc["probabilities"]["R"]["benign"]),
                 "" if committed else " (already committed: discarded)")


def _label(rec) -> str:
    if isinstance(rec, str):
        return rec
    return f"{rec.view or '?'} {rec.modality or '?'} SOP {rec.sop_uid}"


def result_file(store: Store, study: dict, name: str) -> Path | None:
    """A file of a study's current result version, or None."""
    if not study or not study.get("version"):
        return None
    path = store.result_dir(study["study_uid"], int(study["version"])) / name
    return path if path.is_file() else None
