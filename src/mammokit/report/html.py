"""`mammokit report`: one self-contained HTML page of a work folder's results.

Per exam: its four cropped views (downsampled), the malignant (red) / benign (green) heatmap
overlays when heatmaps exist, and its predictions and labels; then the tables and plots of an
evaluation folder (``mammokit evaluate -o`` / ``mammokit reader-study -o``). Images are embedded
as base64 PNG data URIs and the CSS is inline, so the file opens in any browser with no server
and no network (hospital workstations often have neither).
"""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

import numpy as np

from mammokit.config import LABEL_COLUMNS, VIEWS
from mammokit.errors import ImageReadError, InputFileError, MissingFileError
from mammokit.utils.log import get_logger

log = get_logger(__name__)

NOTICE = (
    "Research use only. These outputs come from a research model and are not a medical device; "
    "they must not be used for diagnosis or clinical decisions."
)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
.notice{background:#fff3cd;border:1px solid #e0c060;padding:10px 14px;border-radius:6px;font-weight:600}
h1{margin-top:0} h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
.exam{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px;margin:14px 0}
.views{display:flex;gap:8px;flex-wrap:wrap;align-items:flex-end}
figure{margin:0;text-align:center} figcaption{font-size:12px;color:#555}
figure img{background:#000;display:block}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} th{background:#eee}
td:first-child,th:first-child{text-align:left}
.pos{color:#b00;font-weight:700} .legend{font-size:12px;color:#555}
.plot img{max-width:100%;border:1px solid #ddd}
"""


def _png_data_uri(img: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("could not encode a PNG for the report")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _file_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Display windowing: 0.5th-99.5th percentile of the non-zero (breast) pixels -> 0-255."""
    img = img.astype(np.float32)
    fg = img[img > 0]
    lo, hi = (np.percentile(fg, [0.5, 99.5]) if fg.size else (0.0, 1.0))
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((img - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def _resize(img: np.ndarray, height: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    if h <= height:
        return img
    # INTER_AREA averages source pixels: no aliasing when shrinking a mammogram 10x.
    return cv2.resize(img, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)


def _read_heatmap(path: Path) -> np.ndarray:
    """Heatmap probabilities in [0, 1] ``[H, W]`` (mammokit.data.heatmap_io when present, else the
    native 16-bit PNG convention value = round(p * 65535))."""
    try:
        from mammokit.data.heatmap_io import read_heatmap
    except ImportError:
        read_heatmap = None
    if read_heatmap is not None:
        return np.asarray(read_heatmap(path), dtype=np.float32)
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputFileError(f"{path}: cannot read heatmap")
    return arr.astype(np.float32) / 65535.0


def overlay(gray8: np.ndarray, malignant: np.ndarray | None, benign: np.ndarray | None) -> np.ndarray:
    """Grey image ``[H, W]`` uint8 -> BGR ``[H, W, 3]`` with malignant probability in red and
    benign in green, blended in proportion to the probability."""
    base = np.repeat(gray8[:, :, None].astype(np.float32), 3, axis=2)
    for hm, channel in ((benign, 1), (malignant, 2)):  # BGR: green = 1, red = 2
        if hm is None:
            continue
        a = np.clip(hm, 0, 1)[:, :, None] * 0.8
        color = np.zeros_like(base)
        color[:, :, channel] = 255
        base = base * (1 - a) + color * a
    return np.clip(np.rint(base), 0, 255).astype(np.uint8)


def _view_tiles(workdir: Path, exam: dict, image_dir: str, height: int) -> tuple[list[str], list[str]]:
    """HTML figures of the plain views and of the heatmap overlays (empty when none)."""
    from mammokit.data.images import read_image

    plain, overlays = [], []
    for view in VIEWS:
        names = exam.get(view) or []
        if not names:
            plain.append(f"<figure><figcaption>{view}: no image</figcaption></figure>")
            continue
        path = workdir / image_dir / f"{names[0]}.png"
        try:
            img = read_image(path)
        except ImageReadError as exc:  # one unreadable image must not sink the whole report
            log.warning("report: %s: %s", path, exc)
            plain.append(f"<figure><figcaption>{view}: cannot read {html.escape(path.name)}</figcaption></figure>")
            continue
        gray = _resize(_to_uint8(img), height)
        cap = f"{view} <small>({img.shape[1]}x{img.shape[0]})</small>"
        plain.append(f'<figure><img src="{_png_data_uri(gray)}" alt="{view}"><figcaption>{cap}</figcaption></figure>')
        hms = {}
        for kind in ("malignant", "benign"):
            rel = ((exam.get(f"heatmap_{kind}") or {}).get(view) or [None])[0]
            if rel and (workdir / rel).exists():
                hm = _read_heatmap(workdir / rel)
                if hm.shape != img.shape:
                    log.warning("report: %s: heatmap shape %s differs from image %s", rel, hm.shape, img.shape)
                    continue
                hms[kind] = _resize(hm, height)
        if hms:
            ov = overlay(gray, hms.get("malignant"), hms.get("benign"))
            overlays.append(
                f'<figure><img src="{_png_data_uri(ov)}" alt="{view} heatmaps"><figcaption>{view} heatmaps</figcaption></figure>'
            )
    return plain, overlays


def _scores_table(exam_id: str, pred, labels) -> str:
    if pred is None and labels is None:
        return ""
    rows = ["<table><tr><th></th><th>benign</th><th>malignant</th></tr>"]
    for side, name in (("left", "left"), ("right", "right")):
        cells = []
        for task in ("benign", "malignant"):
            col = f"{side}_{task}"
            p = pred[col] if pred is not None else None
            lab = labels[col] if labels is not None else None
            text = "" if p is None else f"{p:.3f}"
            if lab is not None:
                text += f" (label {int(lab)})" if text else f"label {int(lab)}"
            cls = ' class="pos"' if lab == 1 else ""
            cells.append(f"<td{cls}>{text}</td>")
        rows.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "".join(rows)


def _markdown_to_html(text: str, folder: Path) -> str:
    """The small Markdown subset mammokit writes (headings, pipe tables, images, paragraphs),
    with images from ``folder`` embedded."""
    out, table = [], []

    def flush():
        if table:
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table]
            body = [r for r in cells if not all(set(c) <= set("-: ") for c in r)]
            html_rows = [
                "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c)}</{'th' if i == 0 else 'td'}>" for c in r) + "</tr>"
                for i, r in enumerate(body)
            ]
            out.append("<table>" + "".join(html_rows) + "</table>")
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        m = re.fullmatch(r"!\[(.*)\]\((.+)\)", line.strip())
        if m:
            p = folder / m.group(2)
            if p.is_file() and p.suffix.lower() == ".png":
                out.append(f'<div class="plot"><img src="{_file_data_uri(p)}" alt="{html.escape(m.group(1))}"></div>')
            continue
        h = re.match(r"(#{1,4}) (.*)", line)
        if h:
            level = min(len(h.group(1)) + 1, 5)  # the page's own h1 stays the only h1
            out.append(f"<h{level}>{html.escape(h.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{html.escape(line).replace('`', '')}</p>")
    flush()
    return "\n".join(out)


def _eval_section(eval_dir: Path) -> str:
    if not eval_dir.is_dir():
        raise MissingFileError(f"{eval_dir}: evaluation folder not found")
    parts, used = [], set()
    for md in ("evaluation.md", "reader_study.md"):
        p = eval_dir / md
        if p.is_file():
            text = p.read_text(encoding="utf-8")
            used.update(re.findall(r"!\[.*\]\((.+)\)", text))
            parts.append(_markdown_to_html(text, eval_dir))
    # Plots not referenced by a summary (e.g. embeddings) are still shown.
    for png in sorted(eval_dir.glob("*.png")):
        if png.name not in used:
            parts.append(f'<div class="plot"><h4>{html.escape(png.name)}</h4><img src="{_file_data_uri(png)}" alt="{html.escape(png.stem)}"></div>')
    if not parts:
        raise MissingFileError(f"{eval_dir}: no evaluation.md, reader_study.md or PNG plots in this folder")
    return "\n".join(parts)


def write_report(
    workdir: str | os.PathLike,
    out_html: str | os.PathLike,
    predictions: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    eval_dir: str | os.PathLike | None = None,
    max_exams: int = 50,
    image_height: int = 260,
    sections: list[tuple[str, str]] | None = None,
) -> Path:
    """Write the HTML report (atomically) and return its path.

    Args:
        workdir: work folder with ``exams.json`` and ``cropped/`` (heatmaps optional).
        out_html: output file.
        predictions, labels: optional CSVs; shown per exam.
        eval_dir: optional folder written by ``mammokit evaluate -o`` or ``reader-study -o``.
        max_exams: exams shown (the first ones of exams.json; with predictions, the highest
            malignancy scores first, so the page shows the cases to look at).
        image_height: height in pixels of each view on the page.
        sections: extra ``(title, plain text)`` sections shown before the evaluation (the demo's
            claims and heatmap localisation); the text is escaped and shown preformatted.
    """
    from mammokit.data.examlist import load_exams
    from mammokit.evaluation.tables_io import read_labels, read_predictions
    from mammokit.utils.io import write_text_atomic

    workdir = Path(workdir)
    exams, meta = load_exams(workdir / "exams.json")
    image_dir = meta.get("image_dir", "cropped")
    preds = {}
    if predictions is not None:
        t = read_predictions(predictions)
        preds = {e: {c: t.values[c][i] for c in LABEL_COLUMNS} for i, e in enumerate(t.exam_ids)}
    labs = {}
    if labels is not None:
        t = read_labels(labels)
        labs = {e: {c: t.values[c][i] for c in LABEL_COLUMNS} for i, e in enumerate(t.exam_ids)}
    ordered = list(exams)
    if preds:
        score = lambda e: max(preds.get(str(e.get("exam_id")), {}).get(c, -1) for c in ("left_malignant", "right_malignant"))  # noqa: E731
        ordered.sort(key=score, reverse=True)
    shown = ordered[: max(0, max_exams)]

    body = [
        "<h1>mammokit report</h1>",
        f'<p class="notice">{html.escape(NOTICE)}</p>',
        f"<p>Work folder: <code>{html.escape(str(workdir))}</code>; {len(exams)} exams, {len(shown)} shown"
        + (" (highest malignancy scores first)" if preds else "") + ".</p>",
    ]
    for title, text in sections or []:
        body += [f"<h2>{html.escape(title)}</h2>", f"<pre>{html.escape(text)}</pre>"]
    if eval_dir is not None:
        body += ["<h2>Evaluation</h2>", _eval_section(Path(eval_dir))]
    body.append("<h2>Exams</h2>")
    body.append('<p class="legend">Heatmap overlays: red = malignant, green = benign patch probability. '
                "Views in their stored orientation.</p>")
    for exam in shown:
        eid = str(exam.get("exam_id", "?"))
        plain, overlays = _view_tiles(workdir, exam, image_dir, image_height)
        body.append(f'<div class="exam"><h3>Exam {html.escape(eid)}</h3>')
        body.append(_scores_table(eid, preds.get(eid), labs.get(eid)))
        body.append('<div class="views">' + "".join(plain) + "</div>")
        if overlays:
            body.append('<div class="views">' + "".join(overlays) + "</div>")
        body.append("</div>")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>mammokit report</title>"
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    out = Path(out_html)
    write_text_atomic(out, page)
    return out
