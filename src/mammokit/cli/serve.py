"""``mammokit serve``: a DICOM node + REST API + web viewer that returns structured reports."""

from __future__ import annotations

import argparse

ORDER = 90


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run a DICOM node (C-STORE in, SR + SEG out), a REST API and a web viewer",
        description="Receive mammography studies over DICOM (C-STORE) or HTTP upload, predict each study when its "
        "four views are in (or --study-timeout seconds after its last instance) and return a TID 1500 SR and one "
        "fractional SEG per view, kept under STATE/results and C-STOREd to --send-to. HTTP: GET /healthz, /api "
        "(Bearer token), GET / (viewer). Research use only.",
    )
    p.add_argument("--state", required=True, metavar="DIR", help="state folder (job store, received files, results)")
    p.add_argument("--model", "-m", action="append", required=True, metavar="CKPT", dest="models",
                   help="breast-level checkpoint; repeat for an ensemble")
    p.add_argument("--patch-model", default=None, metavar="CKPT", help="patch classifier (for heatmap models)")
    p.add_argument("--dicom-port", type=int, default=11112, help="DICOM port (default 11112; 0 = no DICOM side)")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind both sides to (default 127.0.0.1)")
    p.add_argument("--ae-title", default="MAMMOKIT", help="our AE title (default MAMMOKIT)")
    p.add_argument("--allow-ae", default="", metavar="AE1,AE2",
                   help="calling AE titles allowed to associate (default: any)")
    p.add_argument("--send-to", default=None, metavar="AE@HOST:PORT", help="C-STORE the results there")
    p.add_argument("--token", default=None, help="API bearer token (default: generated and printed)")
    p.add_argument("--study-timeout", type=float, default=30.0, metavar="S",
                   help="predict an incomplete study S seconds after its last instance (default 30)")
    p.add_argument("--tta", type=int, default=10, help="random windows per view (default 10, the paper's)")
    p.add_argument("--seed", type=int, default=0, help="test-time augmentation seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--batch-studies", type=int, default=4, help="studies predicted together (default 4)")
    p.add_argument("--max-upload-mb", type=float, default=512, help="largest HTTP upload in MB (default 512)")
    p.add_argument("--retry-base", type=float, default=2.0, help="first export retry delay in s (doubles)")
    p.add_argument("--max-attempts", type=int, default=8, help="export attempts before export_failed")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import secrets
    import sys
    from pathlib import Path

    from mammokit.errors import MissingDependencyError, UsageError

    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("mammokit serve needs the serve extra: pip install 'mammokit[serve]'") from None
    from mammokit.inference.exam import load_exam_models
    from mammokit.serve.app import create_app
    from mammokit.serve.service import Service, ServiceSettings
    from mammokit.utils.log import get_logger

    log = get_logger("mammokit.serve")
    if args.batch_studies < 1 or args.tta < 0 or args.study_timeout < 0:
        raise UsageError("--batch-studies must be >= 1, --tta and --study-timeout >= 0")
    token = args.token or secrets.token_urlsafe(24)
    models = load_exam_models(args.models, args.patch_model, device=args.device)
    settings = ServiceSettings(
        state=Path(args.state), ae_title=args.ae_title, host=args.host, dicom_port=args.dicom_port,
        allow_ae=tuple(a.strip() for a in args.allow_ae.split(",") if a.strip()), send_to=args.send_to,
        study_timeout=args.study_timeout, batch_studies=args.batch_studies, tta=args.tta, seed=args.seed,
        retry_base=args.retry_base, max_attempts=args.max_attempts)
    service = Service(settings, models)
    service.start(dicom=args.dicom_port > 0)
    app = create_app(service, token, max_upload=int(args.max_upload_mb * (1 << 20)))
    if not args.token:
        print(f"mammokit serve: API token {token}", flush=True)
    print(f"mammokit serve: viewer http://{args.host}:{args.http_port}/#token={token if not args.token else '...'}"
          f"  (research use only)", flush=True)
    log.info("models: %s; preset %s; device %s", ", ".join(f"{i['role']} {i['arch']} {i['sha256'][:12]}"
                                                        for i in models.info), models.preset.name, models.device)
    try:
        uvicorn.run(app, host=args.host, port=args.http_port, log_level="warning", access_log=False)
    finally:
        service.stop()
    sys.stdout.flush()
    return 0
