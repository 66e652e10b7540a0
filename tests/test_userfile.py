"""charrnn.core.userfile, the one importer of a user's code (gradcheck --user, diagnose/probe --model-factory):
a file's sibling modules import while it runs and sys.path is restored after; its prints go to stderr; a
failure is one CharRNNError naming the user's own line; each import runs the file afresh."""

from __future__ import annotations

import sys

import pytest

from charrnn.core.errors import CharRNNError
from charrnn.core.userfile import call, import_file, import_module


def test_import_file_sees_its_siblings_and_restores_the_path(tmp_path, capsys):
    (tmp_path / "helper_xyz.py").write_text("VALUE = 41\n")
    (tmp_path / "user.py").write_text("import helper_xyz\nprint('hi from the user')\nANSWER = helper_xyz.VALUE + 1\n")
    before = list(sys.path)
    try:
        module = import_file(tmp_path / "user.py", "--user")
    finally:
        sys.modules.pop("helper_xyz", None)
    assert module.ANSWER == 42
    assert sys.path == before
    out = capsys.readouterr()
    assert "hi from the user" in out.err and "hi from the user" not in out.out  # never into --json on stdout


def test_import_file_runs_the_file_afresh(tmp_path):
    path = tmp_path / "user.py"
    path.write_text("N = 1\n")
    assert import_file(path, "--user").N == 1
    path.write_text("N = 222\n")
    assert import_file(path, "--user").N == 222  # a re-run sees the user's edit


def test_failures_name_the_flag_and_the_users_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("x = 1\ny = x / 0\n")
    before = list(sys.path)
    with pytest.raises(CharRNNError, match=r"^--model-factory: cannot import .*broken\.py: ZeroDivisionError: .* \(broken\.py:2\)$"):
        import_file(path, "--model-factory")
    assert sys.path == before  # restored after a failed import too
    with pytest.raises(CharRNNError, match=r"^--model-factory: cannot import no_such_mod_xyz: ModuleNotFoundError: [^(]*$"):
        import_module("no_such_mod_xyz", "--model-factory")


def test_call_wraps_the_users_exception_and_passes_charrnn_errors(capsys):
    def noisy(a, b):
        print("user print")
        return a + b

    assert call(noisy, "--user: f()", 2, 3) == 5
    assert "user print" in capsys.readouterr().err
    with pytest.raises(CharRNNError, match=r"^--user: f\(\) raised KeyError: 'k'"):
        call(lambda: {}["k"], "--user: f()")
    with pytest.raises(CharRNNError, match="^ours$"):
        call(lambda: (_ for _ in ()).throw(CharRNNError("ours")), "--user: f()")
