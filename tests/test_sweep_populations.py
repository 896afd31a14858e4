"""The sweep with --seeds-per-process K: each environment's seeds K at a time, each group one `population.py --seeds`
process (a population), started, resumed, retried and skipped as a whole, on the local pool and on Ray."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import subprocess_env
from tests.test_cli import POPULATION
from tests.test_sweep_ray import REFUSAL_S, SWEEP, assert_refused_quickly_in_one_line, logged, sweep
from tests.test_sweep_report import run_dir_with

RUN = ["--total-timesteps", "1500", "--learning-starts", "300", "--batch-size", "64", "--hidden-size", "32",
       "--eval-frequency", "500", "--eval-episodes", "2", "--checkpoint-frequency", "500", "--no-cuda"]  # fmt: skip
TIMEOUT_S = 120  # each wait: a bound for a machine loaded by other work, not an expected time
POLL_S = 0.05


def asked(record) -> tuple[str, ...]:
    """What a ddpg.py or population.py process was asked to train: ('--seed', '3'), ('--seeds', '1', '2') or
    ('--resume', DIR, ...)."""
    argv = record["argv"]
    (flag,) = [arg for arg in argv if arg in ("--seed", "--seeds", "--resume")]
    values = argv[argv.index(flag) + 1 :]
    values = values[: next((i for i, v in enumerate(values) if v.startswith("--")), len(values))]
    assert record["program"] == ("ddpg.py" if len(values) == 1 else "population.py")  # a population's own script
    return flag, *values


def received(stand_in) -> list[tuple[str, ...]]:
    return sorted(asked(record) for record in stand_in.records())


def test_local_populations_start_resume_only_whole_and_skip_when_finished(tmp_path, stand_in):
    common = ["--envs", "Pendulum-v1", "--seeds-per-process", "2", "--jobs", "2"]
    first = sweep(tmp_path, *common, "--seeds", "1", "2", "3", "--exp-name", "k", env=stand_in.env())
    assert first.returncode == 0 and "3 of 3 runs finished" in first.stdout, first.stdout + first.stderr
    assert received(stand_in) == [("--seed", "3"), ("--seeds", "1", "2")]  # one population, one single run
    assert "start Pendulum-v1 seeds 1 2 (log: " in first.stdout and "start Pendulum-v1 seed 3 (log: " in first.stdout
    assert "  Pendulum-v1 seeds 1 2: finished (start, " in first.stdout  # the summary names the population
    assert sorted(os.listdir(tmp_path / "runs" / "sweep-logs")) == ["Pendulum-v1__k__1_2.log", "Pendulum-v1__k__3.log",
                                                                    "k.machine.txt", "lock"]  # fmt: skip

    # as the runs would have left them: every seed finished; the same sweep again starts nothing
    runs = tmp_path / "runs"
    for seed in (1, 2, 3):
        run_dir_with(runs, f"Pendulum-v1__k__{seed}__100", "model.pt")
    again = sweep(tmp_path, *common, "--seeds", "1", "2", "3", "--exp-name", "k", env=stand_in.env())
    assert again.returncode == 0 and "3 of 3 runs finished" in again.stdout, again.stdout + again.stderr
    assert "Pendulum-v1 seeds 1 2: already finished" in again.stdout
    assert "Pendulum-v1 seed 3: already finished" in again.stdout
    assert len(stand_in.records()) == 2  # no process since the first sweep

    # groups (1 2) (3 4) (5 6) (7 8) (9), each in another state
    for record in stand_in.dir.glob("*.json"):
        record.unlink()
    name = "Pendulum-v1__states__{}__100".format
    for seed in (1, 2, 7):  # finished
        run_dir_with(runs, name(seed), "model.pt")
    for seed in (3, 4, 5, 8):  # interrupted, checkpoint kept
        run_dir_with(runs, name(seed), "checkpoint.pt")
    died = run_dir_with(runs, name(6), "events.out.tfevents.1")  # died before its first checkpoint
    seeds = [str(seed) for seed in range(1, 10)]
    states = sweep(tmp_path, *common, "--seeds", *seeds, "--exp-name", "states", env=stand_in.env())
    assert states.returncode == 0 and "9 of 9 runs finished" in states.stdout, states.stdout + states.stderr
    assert received(stand_in) == [
        ("--resume", f"runs/{name(3)}", f"runs/{name(4)}"),  # both checkpoints: resumed together
        ("--resume", f"runs/{name(8)}"),  # its partner finished: the other goes on alone
        ("--seed", "9"),
        ("--seeds", "5", "6"),  # one checkpoint of two: started again, as a whole
    ]
    out = states.stdout
    assert "Pendulum-v1 seeds 1 2: already finished" in out
    assert not died.exists() and f"Pendulum-v1 seeds 5 6: removed runs/{died.name}: its run ended before" in out
    assert f"Pendulum-v1 seeds 5 6: runs/{name(5)} left as they are: the other seeds have no checkpoint" in out
    assert (runs / name(5) / "checkpoint.pt").exists()  # a checkpoint is never removed


def test_an_interrupted_population_is_resumed_by_the_same_sweep_to_the_end_of_one_left_alone(tmp_path):
    os.makedirs(tmp_path / "reference")
    reference = subprocess.Popen(
        [sys.executable, POPULATION, *RUN, "--seeds", "1", "2", "--exp-name", "pop", "--save-model", "--threads", "1"],
        cwd=tmp_path / "reference", env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # --jobs 2 on two cores: the population's process gets one torch thread, as the reference
    command = [sys.executable, SWEEP, "--envs", "Pendulum-v1", "--seeds", "1", "2", "--seeds-per-process", "2",
               "--jobs", "2", "--exp-name", "pop", "--", *RUN]  # fmt: skip
    cwd = tmp_path / "sweep"
    os.makedirs(cwd)
    cut = subprocess.Popen(command, cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)  # fmt: skip
    deadline = time.time() + TIMEOUT_S
    while len(glob.glob(str(cwd / "runs" / "Pendulum-v1__pop__*" / "checkpoint.pt"))) < 2:
        assert cut.poll() is None and time.time() < deadline, cut.communicate()
        time.sleep(POLL_S)
    os.killpg(cut.pid, signal.SIGINT)  # Ctrl-C in a terminal: the sweep and the population's process get SIGINT
    out, err = cut.communicate(timeout=TIMEOUT_S)
    assert cut.returncode == 1 and "Pendulum-v1 seeds 1 2: interrupted by SIGINT" in out, out + err
    assert "0 of 2 runs finished, 2 interrupted" in out
    run_dirs = sorted(glob.glob(str(cwd / "runs" / "Pendulum-v1__pop__*")))
    assert len(run_dirs) == 2 and not glob.glob(str(cwd / "runs" / "*" / "model.pt"))  # stopped mid-run

    again = subprocess.run(command, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert again.returncode == 0 and "2 of 2 runs finished" in again.stdout, again.stdout + again.stderr
    assert "resume Pendulum-v1 seeds 1 2 (log: " in again.stdout
    log = open(cwd / "runs" / "sweep-logs" / "Pendulum-v1__pop__1_2.log").read()
    for run_dir in run_dirs:  # both from their checkpoints, in one process
        assert log.count(f"resuming runs/{os.path.basename(run_dir)} at step ") == 1
    assert reference.wait(timeout=TIMEOUT_S) == 0, reference.stderr.read()
    assert logged(cwd, "pop") == logged(tmp_path / "reference", "pop")  # every value at every step but SPS

    skipped = subprocess.run(command, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert skipped.returncode == 0 and "Pendulum-v1 seeds 1 2: already finished" in skipped.stdout, skipped.stdout


@pytest.mark.xdist_group("ray")  # with the other tests that start Ray (tests/test_sweep_ray.py)
def test_on_ray_a_population_is_one_task_started_resumed_retried_or_skipped(tmp_path, stand_in):
    pytest.importorskip("ray")
    runs = tmp_path / "runs"
    name = "Pendulum-v1__ray__{}__100".format
    for seed in (1, 2):
        run_dir_with(runs, name(seed), "model.pt")
    for seed in (3, 4):
        run_dir_with(runs, name(seed), "checkpoint.pt")
    on_ray = subprocess.Popen(
        [sys.executable, SWEEP, "--envs", "Pendulum-v1", "--seeds", "1", "2", "3", "4", "5", "6", "--seeds-per-process",
         "2", "--exp-name", "ray", "--ray", "--cpus-per-run", "1", "--", "--no-cuda"],
        cwd=tmp_path, env=stand_in.env(STAND_IN_LINGER="3"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + TIMEOUT_S
    while not (resumed := [r for r in stand_in.records() if "--resume" in r["argv"]]):
        assert on_ray.poll() is None and time.time() < deadline, on_ray.communicate()
        time.sleep(POLL_S)
    os.kill(resumed[0]["pid"], signal.SIGKILL)  # as the out-of-memory killer would
    out, err = on_ray.communicate(timeout=TIMEOUT_S)
    assert on_ray.returncode == 0 and "6 of 6 runs finished" in out, out + err
    assert "Pendulum-v1 seeds 1 2: already finished" in out
    assert "Pendulum-v1 seeds 3 4 was killed by SIGKILL: retry 1 of 3, from its last checkpoint" in out
    assert "Pendulum-v1 seeds 3 4: finished (resume, " in out and "resumed after 1 retry\n" in out
    assert "Pendulum-v1 seeds 5 6: finished (start, " in out
    both = ("--resume", f"runs/{name(3)}", f"runs/{name(4)}")
    assert received(stand_in) == [both, both, ("--seeds", "5", "6")]  # one process per population and attempt
    assert all(record["argv"][-2:] == ["--threads", "1"] for record in stand_in.records())  # --cpus-per-run


BAD_GROUPS = [
    (["--seeds-per-process", "0"], "--seeds-per-process must be at least 1, got 0"),
    (["--seeds", "1", "2", "1"], "--seeds: seed 1 is given twice"),  # a population could not take it
    (["--seeds", "1", "-1"], "--seeds must be in [0, 2^32), got -1"),
    (["--envs", "Pendulum-v1", "Pendulum-v1"], "--envs: Pendulum-v1 is given twice"),  # two processes for one run
    (["--exp-name", "a/b"], "--exp-name a/b: no '/' or '__'"),
    (["--exp-name", "a__2"], "--exp-name a__2: no '/' or '__'"),  # its directories would look like exp a's, seed 2
    (["--", "--exp-name", "mine"], "--exp-name after --: the sweep sets --exp-name itself"),
    (["--", "--seed=7"], "--seed=7 after --: the sweep sets --seed itself"),
    (["--", "--no_save_model"], "--no_save_model after --: the sweep sets --no-save-model itself"),
    (["--runs-dir", "a-file/runs"], "--runs-dir a-file/runs: cannot write there (Not a directory"),
]


@pytest.mark.parametrize("bad, needle", BAD_GROUPS, ids=[" ".join(bad) for bad, _ in BAD_GROUPS])
def test_bad_sweeps_are_refused_in_one_line(tmp_path, bad, needle):
    (tmp_path / "a-file").write_text("")
    start = time.time()
    result = sweep(tmp_path, "--envs", "Pendulum-v1", "--seeds-per-process", "2", *bad, timeout=REFUSAL_S)
    assert_refused_quickly_in_one_line(result, time.time() - start, needle, tmp_path)
