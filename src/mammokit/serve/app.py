"""The HTTP side: a FastAPI app over a :class:`~mammokit.serve.service.Service`.

Routes:

* ``GET /healthz`` (no auth): ``{"status": "ok", ...}``;
* ``GET /`` and ``/static/*``: the web viewer (plain HTML/JS/CSS shipped in the package);
* every ``/api`` route needs ``Authorization: Bearer <token>`` (401 otherwise):
  ``GET /api/studies``, ``GET /api/studies/{uid}``, ``GET /api/studies/{uid}/sr``,
  ``GET /api/studies/{uid}/seg/{view}``, ``GET /api/studies/{uid}/heatmaps/{view}.png?kind=malignant|benign``
  (RGBA overlay on the image's grid), ``GET /api/studies/{uid}/images/{view}.png[?wc=&ww=]``
  (the view windowed as its DICOM says, or with the given window), ``POST /api/studies``
  (multipart upload of DICOM files, at most ``max_upload`` bytes per request; 413 beyond).

The server never fetches a URL it is given: uploads are the only way in besides C-STORE.
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
import hmac
import math
from importlib import resources
from pathlib import Path

from mammokit.config import VIEWS
from mammokit.errors import MammokitError
from mammokit.utils.log import get_logger

log = get_logger(__name__)

__all__ = ["create_app", "study_summary"]

STATIC = "static"


def study_summary(store, study: dict, detail: bool = False) -> dict:
    """The API's view of a study row (``detail``: with instances and the full result)."""
    result = study.get("result") or {}
    probs = result.get("probabilities") or {}
    flat = {f"{'left' if s == 'L' else 'right'}_{k}": probs.get(s, {}).get(k) for s in ("L", "R")
            for k in ("benign", "malignant")}
    out = {
        "study_uid": study["study_uid"], "status": study["status"], "reason": study.get("reason"),
        "patient_id": study.get("patient_id"), "version": study.get("version") or 0,
        "probabilities": flat if result else None,
        "views_used": [v["view"] for v in result.get("views_used", [])],
        "rejected": result.get("rejected", []),
        "export": {"status": study.get("export_status"), "reason": study.get("export_reason"),
                   "attempts": study.get("export_attempts")} if study.get("export_status") else None,
        "updated": study.get("updated"),
    }
    if detail:
        out["result"] = result or None
        out["instances"] = [
            {"sop_uid": r.sop_uid, "view": r.view, "modality": r.modality, "usable": r.usable, "reason": r.reason,
             "received": r.received} for r in store.instances(study["study_uid"])]
        out["predictions"] = [{"version": p["version"], "seconds": p["seconds"], "finished": p["finished"]}
                              for p in store.predictions(study["study_uid"])]
    return out


def create_app(service, token: str, max_upload: int = 512 << 20):
    """The FastAPI application serving ``service`` with the API token ``token``."""
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

    from mammokit import __version__

    app = FastAPI(title="mammokit serve", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    store = service.store
    expected = token.encode()

    def auth(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    def get_study(uid: str) -> dict:
        study = store.study(uid)
        if study is None:
            raise HTTPException(status_code=404, detail=f"no study {uid}")
        return study

    def result_path(study: dict, name: str) -> Path:
        if not study.get("version"):
            raise HTTPException(status_code=404, detail=f"study {study['study_uid']} has no result yet "
                                                        f"(status {study['status']})")
        path = store.result_dir(study["study_uid"], int(study["version"])) / name
        if not path.is_file():
            raise HTTPException(status_code=404, detail=f"no {name} for study {study['study_uid']}")
        return path

    def check_view(view: str) -> str:
        if view not in VIEWS:
            raise HTTPException(status_code=404, detail=f"unknown view {view!r}; one of {', '.join(VIEWS)}")
        return view

    @app.get("/healthz")
    def healthz():
        counts: dict[str, int] = {}
        for s in store.studies():
            counts[s["status"]] = counts.get(s["status"], 0) + 1
        return {"status": "ok", "version": __version__, "ae_title": service.settings.ae_title, "studies": counts}

    @app.get("/", response_class=HTMLResponse)
    def index():
        return (resources.files("mammokit.serve") / STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/static/{name}")
    def static(name: str):
        types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
        suffix = Path(name).suffix
        if "/" in name or "\\" in name or name.startswith(".") or suffix not in types:
            raise HTTPException(status_code=404)
        f = resources.files("mammokit.serve") / STATIC / name
        if not f.is_file():
            raise HTTPException(status_code=404)
        return Response(f.read_bytes(), media_type=types[suffix])

    @app.get("/api/studies", dependencies=[Depends(auth)])
    def list_studies():
        return {"studies": [study_summary(store, s) for s in store.studies()]}

    @app.get("/api/studies/{uid}", dependencies=[Depends(auth)])
    def one_study(uid: str):
        return study_summary(store, get_study(uid), detail=True)

    @app.get("/api/studies/{uid}/sr", dependencies=[Depends(auth)])
    def sr(uid: str):
        study = get_study(uid)
        return FileResponse(result_path(study, "sr.dcm"), media_type="application/dicom",
                            filename=f"{uid}_sr_v{study['version']}.dcm")

    @app.get("/api/studies/{uid}/seg/{view}", dependencies=[Depends(auth)])
    def seg(uid: str, view: str):
        study = get_study(uid)
        return FileResponse(result_path(study, f"seg_{check_view(view)}.dcm"), media_type="application/dicom")

    @app.get("/api/studies/{uid}/heatmaps/{view}.png", dependencies=[Depends(auth)])
    def heatmap(uid: str, view: str, kind: str = "malignant"):
        if kind not in ("malignant", "benign"):
            raise HTTPException(status_code=400, detail="kind must be malignant or benign")
        study = get_study(uid)
        return FileResponse(result_path(study, f"overlay_{check_view(view)}_{kind}.png"), media_type="image/png")

    @app.get("/api/studies/{uid}/images/{view}.png", dependencies=[Depends(auth)])
    def image(uid: str, view: str, wc: float | None = None, ww: float | None = None):
        from mammokit.serve.render import display_png

        study = get_study(uid)
        check_view(view)
        used = {v["view"]: v for v in (study.get("result") or {}).get("views_used", [])}
        rec = None
        if view in used:
            rec = next((r for r in store.instances(uid) if r.sop_uid == used[view]["sop_uid"]), None)
        if rec is None:
            rec = next((r for r in reversed(store.instances(uid)) if r.usable and r.view == view), None)
        if rec is None:
            raise HTTPException(status_code=404, detail=f"study {uid} has no usable {view}")
        if (wc is None) != (ww is None) or (ww is not None and (not math.isfinite(ww) or ww <= 0)):
            raise HTTPException(status_code=400, detail="give both wc and ww (ww > 0)")
        try:
            data = display_png(rec.path, rec.mirrored, wc, ww)
        except MammokitError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})

    @app.post("/api/studies", dependencies=[Depends(auth)])
    async def upload(request: Request):
        length = request.headers.get("content-length")
        if length is None:
            raise HTTPException(status_code=411, detail="Content-Length required")
        if not length.isdigit() or int(length) > max_upload:
            log.warning("upload refused: %s bytes over the limit of %d", length, max_upload)
            raise HTTPException(status_code=413, detail=f"upload of {length} bytes is over the limit of "
                                                        f"{max_upload} bytes")
        form = await request.form(max_files=1000)
        results, status = [], 200
        for key, value in form.multi_items():
            if not hasattr(value, "read"):
                continue
            name = getattr(value, "filename", None) or key
            data = await value.read()
            try:
                r = service.ingest(data, source=f"upload {name}")
            except MammokitError as exc:
                log.warning("upload %s refused: %s", name, exc)
                results.append({"file": name, "stored": False, "error": str(exc)})
                status = 207 if status == 200 else status
                continue
            results.append({"file": name, **r})
        await form.close()
        if not results:
            raise HTTPException(status_code=400, detail="no file in the upload (multipart field 'files')")
        if all("error" in r for r in results):
            status = 400
        return JSONResponse({"files": results}, status_code=status)

    return app
