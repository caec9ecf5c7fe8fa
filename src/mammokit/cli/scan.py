"""``mammokit scan DIR -o manifest.csv``: build a manifest from a folder of DICOMs or PNGs."""

from __future__ import annotations

import argparse

ORDER = 10


def _run(args: argparse.Namespace) -> int:
    from mammokit.data.scan import scan

    result = scan(args.root, args.output, rejects_out=args.rejects, workers=args.workers, strict=args.strict,
                  exam_id=args.exam_id)
    print(
        f"{len(result.rows)} images in {result.n_exams} exams -> {result.manifest_path}; "
        f"{len(result.rejects)} rejected -> {result.rejects_path}"
    )
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "scan",
        help="build a manifest CSV from a folder of DICOM files (or <exam>_<L|R>_<CC|MLO>.png)",
        description="Walk DIR recursively and write a manifest (exam_id,view,path,patient_id,...). "
        "DICOM: exam = StudyInstanceUID (see --exam-id), view = ImageLaterality-ViewPosition; non-MG, FOR PROCESSING, "
        "non-CC/MLO, spot/magnification and unreadable files go to the rejects CSV with a reason.",
    )
    p.add_argument("root", metavar="DIR", help="folder to scan (recursively)")
    p.add_argument("-o", "--output", required=True, metavar="CSV", help="manifest CSV to write")
    p.add_argument(
        "--rejects", metavar="CSV", default=None, help="rejects CSV path,reason (default: <manifest>.rejects.csv)"
    )
    p.add_argument("--workers", type=int, default=1, metavar="N", help="threads reading headers (default 1)")
    p.add_argument("--exam-id", default="study", choices=("study", "accession", "patient-date"),
                   help="how DICOM exam ids are formed, to join your labels' exam_id: study = StudyInstanceUID "
                   "(default), accession = AccessionNumber, patient-date = <PatientID>_<StudyDate>; files "
                   "without that field are rejected")
    p.add_argument("--strict", action="store_true", help="stop on unreadable (corrupt, truncated) files")
    p.set_defaults(func=_run)
