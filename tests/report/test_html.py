"""The HTML report: self-contained (every image a data: URI, no network references)."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from mammokit.cli import main
from mammokit.data.examlist import save_exams
from mammokit.report.html import NOTICE, overlay, write_report

HEADER = "exam_id,left_benign,right_benign,left_malignant,right_malignant"


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.urls, self.scripts = [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "script":
            self.scripts += 1
        for k in ("src", "href"):
            if k in a:
                self.urls.append(a[k])


@pytest.fixture
def workdir(tmp_path):
    wd = tmp_path / "work"
    (wd / "cropped").mkdir(parents=True)
    (wd / "heatmaps" / "malignant").mkdir(parents=True)
    rng = np.random.default_rng(0)
    exams = []
    for eid in ("e1", "e2"):
        exam = {"exam_id": eid, "horizontal_flip": "NO"}
        for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
            name = f"{eid}_{view.replace('-', '_')}"
            exam[view] = [name]
            img = (rng.random((120, 80)) * 60000).astype(np.uint16)
            cv2.imwrite(str(wd / "cropped" / f"{name}.png"), img)
        exams.append(exam)
    # e1 has a malignant heatmap on L-CC: p = 1 in the top half.
    hm = np.zeros((120, 80), np.uint16)
    hm[:60] = 65535
    cv2.imwrite(str(wd / "heatmaps" / "malignant" / "e1_L_CC.png"), hm)
    exams[0]["heatmap_malignant"] = {"L-CC": ["heatmaps/malignant/e1_L_CC.png"]}
    save_exams(wd / "exams.json", exams, image_dir="cropped")
    return wd


def test_overlay_colours():
    gray = np.full((2, 2), 100, np.uint8)
    mal = np.array([[1.0, 0.0], [0.0, 0.0]])
    ben = np.array([[0.0, 1.0], [0.0, 0.0]])
    out = overlay(gray, mal, ben)
    # Alpha 0.8 at p = 1: red pixel = 0.2 * 100 + 0.8 * 255 = 224 in channel 2 (BGR), 20 elsewhere.
    assert out[0, 0].tolist() == [20, 20, 224]
    assert out[0, 1].tolist() == [20, 224, 20]
    assert out[1, 1].tolist() == [100, 100, 100]


def test_report_self_contained(workdir, tmp_path):
    pred = tmp_path / "p.csv"
    pred.write_text(f"{HEADER}\ne1,0.1,0.2,0.3,0.05\ne2,0.1,0.2,0.9,0.1\n")
    labels = tmp_path / "l.csv"
    labels.write_text(f"{HEADER}\ne1,0,0,1,0\ne2,0,0,0,0\n")
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "evaluation.md").write_text("# mammokit evaluation\n\n| model | AUC |\n|---|---|\n| m | 0.812 |\n")
    cv2.imwrite(str(ev / "extra.png"), np.zeros((4, 4), np.uint8))
    out = write_report(workdir, tmp_path / "r.html", predictions=pred, labels=labels, eval_dir=ev)
    text = out.read_text()
    p = _Collect()
    p.feed(text)
    # 8 views + 1 heatmap overlay + the extra plot, all embedded as PNG data URIs.
    assert len(p.imgs) == 10
    assert all(src.startswith("data:image/png;base64,") for src in p.imgs)
    assert base64.b64decode(p.imgs[-1].split(",", 1)[1])[:4] == b"\x89PNG"
    assert not [u for u in p.urls if u.startswith(("http:", "https:", "//"))] and p.scripts == 0
    assert "http://" not in text and "https://" not in text
    assert NOTICE in text and text.index(NOTICE) < text.index("Exam e")
    # Highest malignancy first: e2 (0.9) before e1 (0.3); e1's positive label is marked.
    assert text.index("Exam e2") < text.index("Exam e1")
    assert '<td class="pos">0.300 (label 1)</td>' in text
    assert "<td>0.812</td>" in text


def test_report_cli_and_missing_eval(workdir, tmp_path, capsys):
    assert main(["report", str(workdir), "-o", str(tmp_path / "r.html"), "--max-exams", "1"]) == 0
    assert (tmp_path / "r.html").read_text().count('<div class="exam">') == 1
    assert main(["report", str(workdir), "-o", str(tmp_path / "r2.html"), "--eval", str(tmp_path / "nope")]) == 2
    assert "nope: evaluation folder not found" in capsys.readouterr().err
