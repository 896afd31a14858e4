"""The benchmark scripts: they report only runs that finished, refuse bad input in one line, and read any run."""

import os
import subprocess
import sys

import pytest
from torch.utils.tensorboard import SummaryWriter

from tests.conftest import BENCHMARKS, subprocess_env

REFUSAL_S = 120  # a refusal comes before any timed run; room for a busy machine's imports


def script(name, *args, cwd):
    return subprocess.run([sys.executable, os.path.join(BENCHMARKS, name), *args], cwd=cwd, capture_output=True,
                          text=True, env=subprocess_env(), timeout=REFUSAL_S)  # fmt: skip


def test_a_timed_run_that_did_not_finish_gives_no_figure(monkeypatch):
    import bench

    monkeypatch.setattr(bench.ddpg, "train", lambda args: {"status": 143})  # as a run stopped by SIGTERM returns
    with pytest.raises(SystemExit, match="a timed Pendulum-v1 run ended with exit status 143: no figure from it"):
        bench.measure_sps("Pendulum-v1", 1, 10, {"ddpg.py": {}})


def test_an_against_file_that_is_no_ddpg_py_is_refused_in_one_line(tmp_path):
    (tmp_path / "previous").write_text("fatal: invalid object name\n")  # `git show REV:ddpg.py > previous` failed
    result = script("bench.py", "--against", str(tmp_path / "previous"), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"bench.py: error: --against {tmp_path / 'previous'}: not a ddpg.py that loads (SyntaxError")


def test_a_failed_ddpg_py_stops_the_pendulum_table_with_its_error(tmp_path):
    result = script("pendulum.py", "--seeds", "1", "--", "--tau", "5", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "pendulum.py: error: ddpg.py ended with exit status 2: ddpg.py: error: --tau must be in (0, 1], got 5.0"
    )


def test_a_failure_without_an_error_line_names_its_exit_status():
    from seeds import failure

    assert failure(143, "").endswith(": error: ddpg.py ended with exit status 143")  # SIGTERM: it wrote no error


def test_the_report_reads_runs_without_evaluations_and_names_with_brackets(tmp_path):
    from report import EVAL_TAG, find_runs

    for seed, tags in ((1, [EVAL_TAG, "charts/SPS"]), (2, ["charts/SPS"])):  # seed 2 has logged no evaluation yet
        writer = SummaryWriter(str(tmp_path / "runs" / f"Pendulum-v1__v[2]__{seed}__100"))
        for tag in tags:
            writer.add_scalar(tag, -1.0, 10)
        writer.close()
    runs = find_runs(str(tmp_path / "runs"), "v[2]")
    assert list(runs) == ["Pendulum-v1"] and list(runs["Pendulum-v1"]) == [1]
    assert runs["Pendulum-v1"][1]["returns"].tolist() == [-1.0]


def committed_results() -> dict:
    folder = os.path.join(BENCHMARKS, "results")
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_the_report_writes_beside_the_runs_and_names_a_figure_left_from_an_earlier_report(tmp_path):
    pytest.importorskip("matplotlib")
    for seed in (1, 2):
        writer = SummaryWriter(str(tmp_path / "runs" / f"Pendulum-v1__sweep__{seed}__100"))
        for step in (10, 20):
            writer.add_scalar("eval/episodic_return", -float(step + seed), step)
        writer.close()
    before = committed_results()
    (tmp_path / "runs" / "reports").mkdir()
    (tmp_path / "runs" / "reports" / "sweep__Ant-v5.png").write_bytes(b"from a sweep that had Ant-v5")
    result = script("report.py", cwd=tmp_path)  # no option: the sweep's runs under runs/
    assert result.returncode == 0, result.stderr
    reports = tmp_path / "runs" / "reports"
    assert sorted(os.listdir(reports)) == ["sweep.md", "sweep__Ant-v5.png", "sweep__Pendulum-v1.png"]
    assert "| Pendulum-v1 | 1, 2 | 20 | -21.5 +- 0.5 |" in (reports / "sweep.md").read_text()
    assert f"note: {os.path.join('runs', 'reports', 'sweep__Ant-v5.png')} is from an earlier report" in result.stdout
    assert committed_results() == before  # the README's figures are left alone


def test_the_reports_help_explains_each_option(tmp_path):
    result = script("report.py", "--help", cwd=tmp_path)
    assert result.returncode == 0
    options = " ".join(result.stdout.split("options:", 1)[1].split())  # wrapped lines joined
    for shown in ("--exp-name EXP_NAME the experiment to report", "--runs-dir RUNS_DIR where the runs are",
                  "--out OUT where the PNGs"):  # fmt: skip
        assert shown in options, shown
