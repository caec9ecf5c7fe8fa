"""`mammokit exams import|export`: reference pickled exam lists <-> WORKDIR/exams.json."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from mammokit.cli import main
from mammokit.data.examlist import load_exams


def _reference_list() -> list[dict]:
    # As the authors' files hold them: tuples, numpy integer scalars from numpy arithmetic.
    return [
        {
            "horizontal_flip": "NO",
            "L-CC": ["0_L_CC"], "R-CC": ["0_R_CC"], "L-MLO": [], "R-MLO": ["0_R_MLO"],
            "window_location": {"L-CC": [(0, np.int64(3000), 10, 2000)], "R-CC": [(1, 2, 3, 4)],
                                "R-MLO": [(5, 6, 7, 8)]},
            "rightmost_points": {"L-CC": [((np.int64(1), 5), 7)], "R-CC": [((2, 3), 4)], "R-MLO": [((0, 1), 2)]},
            "bottommost_points": {"L-CC": [(9, (np.int32(1), 2))], "R-CC": [(1, (2, 3))], "R-MLO": [(0, (1, 2))]},
            "distance_from_starting_side": {"L-CC": [np.int64(0)], "R-CC": [3], "R-MLO": [0]},
            "best_center": {"L-CC": [(np.int64(1500), 900)], "R-CC": [(10, 20)], "R-MLO": [(30, 40)]},
        },
        {"horizontal_flip": "YES", "L-CC": ["1_L_CC"], "R-CC": [], "L-MLO": [], "R-MLO": []},
    ]


@pytest.mark.parametrize("protocol", [2, 4])  # 2: the reference's era; 4: Python 3's default
def test_import_export_round_trip(tmp_path, capsys, protocol):
    pkl = tmp_path / "exam_list.pkl"
    pkl.write_bytes(pickle.dumps(_reference_list(), protocol=protocol))
    images = tmp_path / "cropped_images"
    images.mkdir()
    work = tmp_path / "work"
    assert main(["exams", "import", str(pkl), "--images", str(images), "-o", str(work)]) == 0
    exams, meta = load_exams(work / "exams.json")
    assert meta["image_dir"] == str(images.resolve())  # outside the work folder: absolute
    assert (work / meta["image_dir"]).resolve() == images.resolve()
    assert meta["preset"] == "paper"
    assert [e["exam_id"] for e in exams] == ["0", "1"]
    assert exams[0]["best_center"]["L-CC"] == [[1500, 900]]
    assert type(exams[0]["window_location"]["L-CC"][0][1]) is int  # numpy scalar -> int in JSON
    doc = json.loads((work / "exams.json").read_text())
    assert doc["exams"][0]["rightmost_points"]["L-CC"] == [[[1, 5], 7]]

    out = tmp_path / "back.pkl"
    assert main(["exams", "export", str(work), "-o", str(out)]) == 0
    back = pickle.loads(out.read_bytes())
    ref = _reference_list()
    # Same content as the original list, with plain Python ints and the reference's tuples.
    assert back == [
        {**ref[0]},
        {"horizontal_flip": "YES", "L-CC": ["1_L_CC"], "R-CC": [], "L-MLO": [], "R-MLO": []},
    ]
    assert back[0]["best_center"]["L-CC"][0] == (1500, 900) and isinstance(back[0]["best_center"]["L-CC"][0], tuple)
    assert type(back[0]["window_location"]["L-CC"][0][1]) is int


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tmp_path, capsys):
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps([{"L-CC": [], "x": _Evil()}], protocol=2))
    images = tmp_path / "img"
    images.mkdir()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["exams", "import", str(pkl), "--images", str(images), "-o", str(tmp_path / "w")])
    finally:
        os.chdir(cwd)
    assert code == 2
    err = capsys.readouterr().err
    assert "evil.pkl" in err and "refusing to load" in err and "system" in err
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "w" / "exams.json").exists()


def test_import_errors(tmp_path, capsys):
    assert main(["exams", "import", str(tmp_path / "x.pkl"), "--images", str(tmp_path), "-o", str(tmp_path / "w")]) == 2
    (tmp_path / "x.pkl").write_bytes(b"not a pickle")
    assert main(["exams", "import", str(tmp_path / "x.pkl"), "--images", str(tmp_path), "-o", str(tmp_path / "w")]) == 2
    assert "x.pkl: not a readable pickle" in capsys.readouterr().err
    assert main(["exams", "export", str(tmp_path / "nowork"), "-o", str(tmp_path / "o.pkl")]) == 2
    assert "no exam list here" in capsys.readouterr().err
