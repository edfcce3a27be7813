"""Two visitors on one server: neither sees, lists nor opens the other's uploads, runs or decoders.

Session A evaluates a dataset from its own upload through the real evaluation form; session B's
pages must not list that run, show A's upload path or token, nor open A's folder when B types it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer.datasets import make_synthetic
from explorer.runs import list_runs
from explorer.server_files import ServerPathError, SessionSpace, dataset_spec, new_token, public_name, server_path
from tests.app.conftest import all_text, open_page, run, widget

TOKEN_KEY = "cam.upload_token"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A server whose data/ and runs/ are fresh folders (the shipped evaluations stay listed)."""
    monkeypatch.setattr("explorer.server_files.DATA_DIR", tmp_path / "data")
    monkeypatch.setenv("CAM_EXPLORER_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("CAM_EXPLORER_ROOTS", raising=False)
    (tmp_path / "data").mkdir()
    return tmp_path


def test_another_sessions_upload_reads_as_missing(server: Path) -> None:
    a, b = SessionSpace(new_token()), SessionSpace(new_token())
    (a.uploads / "photos").mkdir(parents=True)
    assert server_path("uploads/photos", space=a) == (a.uploads / "photos").resolve()
    with pytest.raises(ServerPathError) as typed_by_b:
        server_path(str(a.uploads / "photos"), space=b)
    with pytest.raises(ServerPathError) as missing:
        server_path(str(server / "data" / "nothing-here"), space=b)
    assert str(typed_by_b.value).replace(str(a.uploads / "photos"), "X") == \
        str(missing.value).replace(str(server / "data" / "nothing-here"), "X")
    for typed in ("uploads/photos", f"data/uploads/{a.token}/photos", f"{a.uploads}/../{a.token}/photos"):
        with pytest.raises(ServerPathError):
            server_path(typed, space=b)
        with pytest.raises(ServerPathError):
            server_path(typed)  # no session at all: no upload folder is shared
    with pytest.raises(ServerPathError):
        dataset_spec(f"folder:{a.uploads}/photos", space=b)


def test_a_link_in_ones_own_upload_to_another_session_is_refused(server: Path) -> None:
    a, b = SessionSpace(new_token()), SessionSpace(new_token())
    (a.uploads / "photos").mkdir(parents=True)
    b.uploads.mkdir(parents=True)
    (b.uploads / "theirs").symlink_to(a.uploads / "photos")
    with pytest.raises(ServerPathError):
        server_path("uploads/theirs", space=b)


def test_public_names_never_show_a_token(server: Path) -> None:
    space = SessionSpace(new_token())
    spec = f"synthetic:{space.uploads}/birds-0a1b"
    shown = public_name(spec)
    assert space.token not in shown and shown == "synthetic:uploads/birds-0a1b"
    assert space.token not in public_name(str(space.runs / "lite0-run"))


def test_list_runs_marks_only_ones_own_and_never_lists_a_session_space(server: Path) -> None:
    space = SessionSpace(new_token())
    space.runs.mkdir(parents=True)
    runs = list_runs(own=space.runs)
    assert all(not run.mine for run in runs)  # nothing of this session's yet: only shipped ones
    assert not any(SessionSpace.__name__ in run.label or "sessions" in str(run.path) for run in runs)


@pytest.mark.slow
def test_two_sessions_through_the_evaluation_form(server: Path) -> None:
    a = open_page("thresholds_and_histograms")
    token_a = a.session_state[TOKEN_KEY]
    upload = SessionSpace(token_a).uploads / "birds-0a1b"
    make_synthetic(upload, seed=3, sizes={"train": 0, "val": 0, "test": 8})  # what the zip uploader unpacks
    a.text_input(key=widget("evalform.dataset")).set_value("synthetic:uploads/birds-0a1b")
    a.selectbox(key=widget("evalform.backbone")).set_value("synthetic_cnn")
    a.multiselect(key=widget("evalform.methods")).set_value(["gradcam"])
    a.number_input(key=widget("evalform.limit")).set_value(8)
    run(a)
    a.button(key=widget("evalform.go")).click()
    run(a)
    assert not a.error, [e.value for e in a.error]
    mine = [run for run in list_runs(own=SessionSpace(token_a).runs) if run.mine]
    assert len(mine) == 1 and "[yours]" in mine[0].label and "uploads/birds-0a1b" in mine[0].label
    assert token_a not in mine[0].label

    b = open_page("thresholds_and_histograms")
    token_b = b.session_state[TOKEN_KEY]
    assert token_b != token_a
    options = b.selectbox(key=widget("run")).options
    assert not any("[yours]" in o or "birds" in o for o in options), options
    assert token_a not in all_text(b) and "uploads/birds" not in all_text(b)
    for typed in (f"synthetic:{upload}", "synthetic:uploads/birds-0a1b", f"synthetic:data/uploads/{token_a}/birds-0a1b"):
        b.text_input(key=widget("evalform.dataset")).set_value(typed)
        run(b)
        b.button(key=widget("evalform.go")).click()
        run(b)
        assert b.error and "is not a folder this server shares" in b.error[0].value, typed
    assert not [run for run in list_runs(own=SessionSpace(token_b).runs) if run.mine]

    failures = open_page("failure_cases")
    assert not any("birds" in o for o in failures.selectbox(key=widget("failure.run")).options)
