"""A sweep never takes a result from another experiment: it compares the settings of the runs it finds with its own,
refuses other ones in one line before starting anything, extends its runs when only its budget grew; the report puts
only runs of one set of settings in a row and says which it left out."""

import os
import sys

import pytest
import tyro

import ddpg
from tests.test_sweep_report import script

OPTIONS = ["--total-timesteps", "400", "--learning-starts", "100", "--batch-size", "32", "--hidden-size", "16",
           "--eval-frequency", "200", "--eval-episodes", "1", "--no-cuda"]  # fmt: skip


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    """A trial sweep's runs, as its ddpg.py processes leave them: exp `e`, seeds 1 and 3 with OPTIONS, seed 2 with
    another learning rate (trained in between)."""
    import sweep

    cwd = tmp_path_factory.mktemp("trial")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        for seed, more in ((1, []), (2, ["--learning-rate", "5e-4"]), (3, [])):
            command = sweep.start_command("Pendulum-v1", (seed,), "e", [*OPTIONS, *more])
            assert ddpg.train(tyro.cli(ddpg.Args, args=command))["status"] == 0
    return cwd


def run_dir(cwd, seed):
    (name,) = [name for name in os.listdir(cwd / "runs") if name.startswith(f"Pendulum-v1__e__{seed}__")]
    return f"runs/{name}"


def modified(cwd):
    return {path: os.stat(path).st_mtime_ns for path in (cwd / "runs").glob("Pendulum-v1__*/*")}


def test_a_full_sweep_after_a_trial_of_the_same_name_is_refused_in_one_line_before_anything_starts(trial, stand_in):
    before = modified(trial)
    full = script("sweep.py", "--envs", "Pendulum-v1", "--seeds", "1", "3", "--exp-name", "e", "--preset", "mujoco",
                  cwd=trial, env=stand_in.env())  # fmt: skip
    assert full.returncode == 2 and full.stdout == ""  # nothing counted as finished, nothing resumed
    assert full.stderr.splitlines() == [
        f"sweep.py: error: {run_dir(trial, 1)} was trained with --learning-rate 0.001, "
        "this sweep's runs with 0.0003: it is not one of them; give this sweep another "
        "--exp-name, or move that run out of the way"
    ]  # fmt: skip (Args' first)
    assert stand_in.records() == [] and modified(trial) == before

    shorter = script("sweep.py", "--envs", "Pendulum-v1", "--seeds", "3", "--exp-name", "e", "--", *OPTIONS,
                     "--total-timesteps", "300", cwd=trial, env=stand_in.env())  # fmt: skip
    assert shorter.returncode == 2 and stand_in.records() == []
    assert f"{run_dir(trial, 3)} was trained with --total-timesteps 400, this sweep's runs with 300" in shorter.stderr


def test_a_sweep_with_a_larger_budget_extends_its_runs_and_one_with_the_same_skips_them(trial, stand_in):
    same = script("sweep.py", "--envs", "Pendulum-v1", "--seeds", "1", "3", "--exp-name", "e", "--", *OPTIONS,
                  cwd=trial, env=stand_in.env())  # fmt: skip
    assert same.returncode == 0 and same.stdout.count("already finished") == 2, same.stdout + same.stderr
    assert stand_in.records() == []

    longer = script("sweep.py", "--envs", "Pendulum-v1", "--seeds", "1", "3", "--exp-name", "e", "--", *OPTIONS,
                    "--total-timesteps", "600", cwd=trial, env=stand_in.env())  # fmt: skip
    assert longer.returncode == 0, longer.stdout + longer.stderr
    received = sorted(record["argv"] for record in stand_in.records())
    assert [argv[:2] for argv in received] == [["--resume", run_dir(trial, 1)], ["--resume", run_dir(trial, 3)]]
    assert all(argv[-4:-2] == ["--total-timesteps", "600"] for argv in received)  # then the sweep's --threads


def test_the_report_puts_runs_of_one_set_of_settings_in_a_row_and_names_those_it_left_out(trial, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    import report

    out = trial / "results"
    monkeypatch.chdir(trial)
    monkeypatch.setattr(sys, "argv", ["report.py", "--exp-name", "e", "--out", str(out)])
    report.main()
    left_out = f"{run_dir(trial, 2)}: trained with --learning-rate 0.0005, the row's runs with 0.001"
    assert f"left out {left_out}" in capsys.readouterr().out
    table = (out / "e.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| Pendulum-v1 "))
    assert [cell.strip() for cell in row.strip("|").split("|")][1] == "1, 3"
    assert f"\n- {left_out}\n" in table
