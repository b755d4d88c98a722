"""The real `peam` entry point, with tiny numbers (CleanRL-style smoke tests), and bad input."""

import os
import pathlib
import subprocess
import sys

import pytest

PEAM = str(pathlib.Path(sys.executable).parent / "peam")


def peam(*args, home=None, env=None, timeout=300):
    environ = dict(os.environ, **(env or {}))
    if home is not None:
        environ["PEAM_HOME"] = str(home)
    environ.pop("PEAM_DB", None)
    return subprocess.run([PEAM, *args], capture_output=True, text=True, env=environ, timeout=timeout)


def test_run_then_skills_lists_what_was_practised(tmp_path):
    out = peam("run", "--task", "make_wood_pickaxe", "--episodes", "2", "--seed", "5", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "2/2 episodes succeeded" in out.stdout
    table = peam("skills", home=tmp_path)
    assert table.returncode == 0, table.stderr
    for skill in ("collect_wood", "place_table", "make_wood_pickaxe"):
        assert skill in table.stdout


def test_help_starts_without_torch_ray_or_sqlalchemy():
    code = ("import sys; from agent.cli import app; "
            "heavy = [m for m in ('torch', 'ray', 'sqlalchemy') if m in sys.modules]; "
            "print(heavy); sys.exit(bool(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize("command", [["run"], ["bench", "continual"]])
def test_memory_help_names_every_mode(command):
    from agent.services.memory_modes import MODES

    out = peam(*command, "--help", env={"COLUMNS": "2000", "TERMINAL_WIDTH": "2000"}, timeout=60)
    assert out.returncode == 0, out.stderr
    (line,) = [row for row in out.stdout.splitlines() if "--memory" in row]
    for mode in MODES:
        assert f" {mode}" in line, (mode, line)


@pytest.mark.parametrize("args, message", [
    (["run", "--task", "make_golden_apple"], "unknown task 'make_golden_apple'"),
    (["run", "--env", "tetris"], "unknown env 'tetris'"),
    (["run", "--planner", "oracle"], "unknown planner 'oracle'"),
    (["run", "--memory", "dreams"], "unknown memory mode 'dreams'"),
    (["run", "--consolidate", "sometimes"], "unknown --consolidate 'sometimes'"),
    (["run", "--db", "mysql+nope://x/y"], "database"),
    (["run", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none"], "cannot connect"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    home = tmp_path / "home"
    out = peam(*args, home=home, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("peam: error:"), out.stderr
    assert message in lines[0]
    assert "Traceback" not in out.stderr
    assert not home.exists()


def test_unwritable_data_directory_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = peam("run", "--task", "collect_wood", home=blocker / "home", timeout=60)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert blocker.read_text() == "not a directory"


def test_skills_on_a_missing_store_says_how_to_make_one(tmp_path):
    out = peam("skills", home=tmp_path / "nothing", timeout=60)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nothing").exists()
