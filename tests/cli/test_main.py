"""The ``mammokit`` command's error contract: a user error is one line (exit 2); a bug is a
traceback."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from mammokit import cli
from mammokit.errors import InputFileError


def _run(monkeypatch, capsys, exc):
    def boom(args):
        raise exc

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(boom))
    rc = cli.main(["boom"])
    return rc, capsys.readouterr().err


def _parser_with(func):
    import argparse

    p = argparse.ArgumentParser(prog="mammokit")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("boom").set_defaults(func=func)
    return p


def test_user_error_is_one_line(monkeypatch, capsys):
    rc, err = _run(monkeypatch, capsys, InputFileError("m.csv: line 3:\nunknown view 'L-XCC'"))
    assert rc == 2
    assert err == "mammokit boom: error: m.csv: line 3: unknown view 'L-XCC'\n"


def test_disk_full_is_one_line(monkeypatch, capsys):
    rc, err = _run(monkeypatch, capsys, OSError(errno.ENOSPC, "No space left on device", "/out/x.png"))
    assert rc == 2 and err == "mammokit boom: error: /out/x.png: No space left on device\n"


@pytest.mark.parametrize("exc", [ValueError("an internal check"), KeyError("k"), TypeError("t")])
def test_a_bug_is_not_a_user_error(monkeypatch, capsys, exc):
    with pytest.raises(type(exc)):
        _run(monkeypatch, capsys, exc)


def test_real_command_user_error_has_no_traceback(tmp_path):
    bad = tmp_path / "manifest.csv"
    bad.write_text("exam_id,view,path\ne1,L-XCC,a.png\n")
    r = subprocess.run([sys.executable, "-m", "mammokit", "preprocess", str(bad), "--out", str(tmp_path / "w"),
                        "--preset", "tiny"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "unknown view 'L-XCC'" in r.stderr and str(bad) in r.stderr
    assert len([line for line in r.stderr.splitlines() if "error:" in line]) == 1
