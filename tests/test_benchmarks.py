"""The benchmark scripts: they report only runs that finished, refuse bad input in one line, and read any run."""

import os
import subprocess
import sys

import pytest
from torch.utils.tensorboard import SummaryWriter

from tests.conftest import BENCHMARKS, subprocess_env

REFUSAL_S = 120  # a refusal comes before any timed run; room for a busy machine's imports
FILMING_S = 600  # gif.py's tiny training and two films, on a machine that the rest of the suite keeps busy


def script(name, *args, cwd, timeout=REFUSAL_S):
    return subprocess.run([sys.executable, os.path.join(BENCHMARKS, name), *args], cwd=cwd, capture_output=True,
                          text=True, env=subprocess_env(), timeout=timeout)  # fmt: skip


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


def test_a_missing_against_script_is_refused_in_one_line_before_any_run(tmp_path):
    result = script("seeds.py", "--against", str(tmp_path / "old" / "ddpg.py"), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "" and not os.listdir(tmp_path)
    assert result.stderr.strip() == f"seeds.py: error: --against {tmp_path / 'old' / 'ddpg.py'}: no such file"


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


def test_the_report_draws_runs_with_one_evaluation_as_a_point(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import report

    for seed in (1, 2):
        writer = SummaryWriter(str(tmp_path / "runs" / f"Pendulum-v1__sweep__{seed}__100"))
        writer.add_scalar(report.EVAL_TAG, -100.0 * seed, 2000)
        writer.close()
    figures = []
    monkeypatch.setattr(report, "save", lambda fig, path: figures.append(fig))
    report.plot("Pendulum-v1", report.find_runs(str(tmp_path / "runs"), "sweep")["Pendulum-v1"], "unused.png")
    (figure,) = figures
    for ax in figure.axes:  # against steps and against wall time
        (mean,) = ax.lines
        assert mean.get_marker() == "o" and list(mean.get_ydata()[:1]) == [-150.0]  # a point where a line shows nothing
        (spread,) = ax.collections  # min to max: the seeds' -200 and -100
        assert spread.get_segments()[0][:, 1].tolist() == [-200.0, -100.0]


def test_gif_trains_with_its_progress_on_the_console_then_films_that_run_again_without_training(tmp_path):
    committed = committed_results()
    tiny = ["--total-timesteps", "300", "--learning-starts", "200", "--batch-size", "32", "--hidden-size", "8",
            "--eval-episodes", "1", "--no-cuda"]  # fmt: skip
    trained = script("gif.py", "--", *tiny, cwd=tmp_path, timeout=FILMING_S)
    assert trained.returncode == 0, trained.stderr
    assert "step 300/300 | SPS" in trained.stdout  # ddpg.py's own progress line, as it trains
    (run_name,) = os.listdir(tmp_path / "runs")
    gif = tmp_path / "runs" / run_name / "agent.gif"
    assert gif.read_bytes()[:6] == b"GIF89a"
    gif.unlink()
    filmed = script("gif.py", "--run", os.path.join("runs", run_name), cwd=tmp_path, timeout=FILMING_S)
    assert filmed.returncode == 0, filmed.stderr
    assert "--exp-name" not in filmed.stdout and os.listdir(tmp_path / "runs") == [run_name]  # nothing trained
    assert gif.read_bytes()[:6] == b"GIF89a"
    assert committed_results() == committed  # the README's GIF is left alone


def write_cgroup(root, files: dict) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return str(root)


@pytest.mark.parametrize(
    "files, quota",
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2: docker --cpus 1.5
        ({"cpu.max": "max 100000\n"}, None),  # v2, no quota
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no quota
        ({"cpu.max": "max 100000\n", "cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),  # unreadable: as no quota
        ({}, None),  # no control group files at all (not Linux, or not mounted)
    ],
)
def test_a_cpu_quota_is_read_from_cgroup_v2_or_v1(tmp_path, files, quota):
    import machine

    assert machine.cpu_quota(write_cgroup(tmp_path, files)) == quota


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs CPU affinity (Linux)")
def test_the_available_cores_are_the_affinitys_or_fewer_under_a_quota(tmp_path):
    import machine

    cores = len(os.sched_getaffinity(0))
    assert machine.available_cores(write_cgroup(tmp_path / "none", {"cpu.max": "max 100000"})) == cores
    assert machine.available_cores(write_cgroup(tmp_path / "half", {"cpu.max": "50000 100000"})) == 1  # at least one
    many = write_cgroup(tmp_path / "many", {"cpu.max": f"{100000 * (cores + 8)} 100000"})
    assert machine.available_cores(many) == cores  # a quota beyond the affinity's cores gives no more
    if cores >= 2:
        assert machine.available_cores(write_cgroup(tmp_path / "one", {"cpu.max": "150000 100000"})) == 1  # whole cores
