"""The sweep runner and the report on a tiny sweep: two short Pendulum runs and one that fails."""

import errno
import fcntl
import glob
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import BENCHMARKS, ROOT, subprocess_env

TINY = ["--total-timesteps", "500", "--learning-starts", "300", "--batch-size", "64", "--hidden-size", "32",
        "--eval-frequency", "250", "--eval-episodes", "1", "--no-cuda"]  # fmt: skip
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def script(name, *args, cwd, first_on_path=(), env=None, timeout=None):
    """benchmarks/NAME ARGS, run to its end in cwd; env: the child's environment (default: subprocess_env)."""
    return subprocess.run([sys.executable, os.path.join(BENCHMARKS, name), *args], cwd=cwd, capture_output=True,
                          text=True, env=env or subprocess_env(*first_on_path), timeout=timeout)  # fmt: skip


def test_sweep_survives_a_failed_run_skips_finished_ones_and_reports_logged_values(tmp_path):
    pytest.importorskip("matplotlib")
    sweep = script("sweep.py", "--envs", "Pendulum-v1", "NoSuchEnv-v0", "--seeds", "1", "2", "--jobs", "2",
                   "--exp-name", "tiny", "--", *TINY, cwd=tmp_path)  # fmt: skip
    assert sweep.returncode == 1  # some runs failed ...
    assert "2 of 4 runs finished, 2 failed" in sweep.stdout  # ... but not the others
    assert "NoSuchEnv-v0 seed 1: FAILED with exit status 2" in sweep.stdout
    run_dirs = sorted((tmp_path / "runs").glob("Pendulum-v1__tiny__*"))
    assert len(run_dirs) == 2 and all((d / "model.pt").exists() for d in run_dirs)

    again = script("sweep.py", "--envs", "Pendulum-v1", "--seeds", "1", "2", "--exp-name", "tiny", "--", *TINY,
                   cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0 and again.stdout.count("already finished") == 2
    assert len(list((tmp_path / "runs").glob("Pendulum-v1__tiny__*"))) == 2  # nothing ran twice

    out = tmp_path / "results"
    report = script("report.py", "--exp-name", "tiny", "--out", str(out), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (out / "tiny__Pendulum-v1.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (out / "tiny__Pendulum-v1__critic.png").read_bytes().startswith(PNG_SIGNATURE)  # the critic's chart too
    table = (out / "tiny.md").read_text()

    finals = []
    for run_dir in run_dirs:
        events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        events.Reload()
        evals = events.Scalars("eval/episodic_return")
        assert [e.step for e in evals] == [250, 500]
        finals.append(evals[-1].value)
    row = next(line for line in table.splitlines() if line.startswith("| Pendulum-v1 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "1, 2" and cells[2] == "500"
    assert cells[3] == f"{np.mean(finals):.1f} +- {np.std(finals):.1f}"
    assert "Machine: " in table and "not recorded" not in table


def test_wall_time_leaves_out_the_time_between_a_run_and_its_resumption(tmp_path):
    from report import read_run
    from torch.utils.tensorboard import SummaryWriter

    # first process: steps 1-2 from t=1000 to t=1010; resumed 500 s later: step 3 at t=1530 (20 s after its start)
    for events in ([(1, 1000.0), (2, 1010.0)], [(3, 1510.0), (3, 1530.0)]):
        writer = SummaryWriter(str(tmp_path))
        for step, wall_time in events:
            tag = "eval/episodic_return" if wall_time != 1510.0 else "charts/SPS"
            writer.add_scalar(tag, -step, step, walltime=wall_time)
        writer.close()
    run = read_run(str(tmp_path))
    assert run["steps"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(run["seconds"], [0.0, 10.0, 30.0])


def test_the_critics_chart_averages_the_seeds_at_their_common_steps_and_skips_runs_without_it(tmp_path):
    from report import CRITIC_TAGS, by_steps, critic_series, has_critic, read_run
    from torch.utils.tensorboard import SummaryWriter

    import ddpg

    assert CRITIC_TAGS == {"q_estimate": ddpg.EVAL_Q_TAG, "discounted_return": ddpg.EVAL_DISCOUNTED_TAG}
    for seed, steps in ((1, [10, 20, 30]), (2, [10, 20])):  # seed 2 stopped early
        writer = SummaryWriter(str(tmp_path / str(seed)))
        for step in steps:
            writer.add_scalar("eval/episodic_return", -step, step)
            writer.add_scalar(ddpg.EVAL_Q_TAG, seed * step, step)
            writer.add_scalar(ddpg.EVAL_DISCOUNTED_TAG, -seed * step, step)
        writer.close()
    seeds = {seed: read_run(str(tmp_path / str(seed))) for seed in (1, 2)}
    assert has_critic(seeds)
    steps, mean, low, high = by_steps(seeds, critic_series("q_estimate"))
    assert steps.tolist() == [10, 20] and mean.tolist() == [15, 30] and low.tolist() == [10, 20]
    assert by_steps(seeds, critic_series("discounted_return"))[1].tolist() == [-15, -30]
    writer = SummaryWriter(str(tmp_path / "older"))  # a ddpg.py from before: no critic's estimates
    writer.add_scalar("eval/episodic_return", -10, 10)
    writer.close()
    assert not has_critic({**seeds, 3: read_run(str(tmp_path / "older"))})


def test_sweep_tells_an_interrupted_run_from_a_failed_one(tmp_path):
    from sweep import outcome

    log = tmp_path / "run.log"
    log.write_text("step 100/1000\nTraceback (most recent call last):\nValueError: boom\n")
    assert outcome(0, "resume", 2.0, str(log)) == "finished (resume, 2.0 min)"
    assert outcome(143, "start", 2.0, str(log)) == "interrupted by SIGTERM after 2.0 min, checkpoint kept"
    assert outcome(130, "start", 2.0, str(log)).startswith("interrupted by SIGINT")
    assert outcome(-15, "start", 2.0, str(log)).startswith("interrupted by SIGTERM")  # killed before its handler
    failed = outcome(1, "start", 2.0, str(log))
    assert failed.startswith("FAILED with exit status 1") and "ValueError: boom" in failed


def test_ctrl_c_stops_the_sweep_keeping_every_started_run_resumable(tmp_path):
    sweep = subprocess.Popen(
        [sys.executable, os.path.join(BENCHMARKS, "sweep.py"), "--envs", "Pendulum-v1", "--seeds", "1", "2", "3",
         "--jobs", "2", "--exp-name", "stop", "--", *TINY, "--total-timesteps", "20000"],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True, start_new_session=True,
        env=subprocess_env(),
    )  # fmt: skip
    deadline = time.time() + 60
    while len(list((tmp_path / "runs").glob("Pendulum-v1__stop__*/events.out.tfevents.*"))) < 2:
        assert time.time() < deadline, "the first two runs did not start"
        time.sleep(0.2)
    time.sleep(2)  # into their training loops
    os.killpg(sweep.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the sweep and its runs all get SIGINT
    out, _ = sweep.communicate(timeout=60)
    assert sweep.returncode == 1
    assert "seed 1: interrupted by SIGINT" in out and "seed 2: interrupted by SIGINT" in out
    assert "seed 3: interrupted before it started" in out
    started = sorted((tmp_path / "runs").glob("Pendulum-v1__stop__*"))
    assert len(started) == 2 and all((d / "checkpoint.pt").exists() for d in started)


def fake_nvidia_smi(folder, indices):
    """An `nvidia-smi` that lists GPUs with these indices, in a folder to put first on PATH."""
    os.makedirs(folder)
    (folder / "nvidia-smi").write_text("#!/bin/sh\n" + "".join(f"echo {i}\n" for i in indices))
    os.chmod(folder / "nvidia-smi", 0o755)
    return str(folder)


def received(stand_in, variable):
    """{seed: the value of `variable` in its run's process}, from the stand-in's records."""
    return {int(r["argv"][r["argv"].index("--seed") + 1]): r[variable] for r in stand_in.records()}


def test_each_local_run_gets_a_gpu_in_turn_and_the_sweeps_wandb_group(tmp_path, stand_in):
    path = f"{fake_nvidia_smi(tmp_path / 'bin', [0, 1])}{os.pathsep}{os.environ['PATH']}"
    env = stand_in.env(PATH=path, WANDB_RUN_GROUP="someone-elses")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    common = ["--envs", "Pendulum-v1", "--exp-name", "gpus"]
    sweep = script("sweep.py", *common, "--seeds", "1", "2", "--jobs", "2", cwd=tmp_path, env=env)
    assert sweep.returncode == 0 and "2 of 2 runs finished" in sweep.stdout, sweep.stdout + sweep.stderr
    assert "GPUs: 0, 1 (from nvidia-smi); each run gets the one that the fewest running runs use" in sweep.stdout
    assert "start Pendulum-v1 seed 2 on GPU 1 (log: " in sweep.stdout
    assert received(stand_in, "CUDA_VISIBLE_DEVICES") == {1: "0", 2: "1"}
    assert "WANDB_RUN_GROUP=someone-elses in the environment: the runs get the sweep's group instead" in sweep.stdout
    assert received(stand_in, "WANDB_RUN_GROUP") == {1: "gpus", 2: "gpus"}

    # CUDA_VISIBLE_DEVICES, where set, says which GPUs the sweep may use; a third run at once shares the first GPU
    for record in stand_in.dir.glob("*.json"):
        record.unlink()
    env["CUDA_VISIBLE_DEVICES"] = "3,5"
    sweep = script("sweep.py", *common, "--seeds", "3", "4", "5", "--jobs", "3", cwd=tmp_path, env=env)
    assert sweep.returncode == 0 and "GPUs: 3, 5 (from CUDA_VISIBLE_DEVICES)" in sweep.stdout, sweep.stderr
    assert received(stand_in, "CUDA_VISIBLE_DEVICES") == {3: "3", 4: "5", 5: "3"}

    # runs that do not use CUDA are left as they are
    for record in stand_in.dir.glob("*.json"):
        record.unlink()
    sweep = script("sweep.py", *common, "--seeds", "6", "--", "--no-cuda", cwd=tmp_path, env=env)
    assert sweep.returncode == 0 and "GPU" not in sweep.stdout, sweep.stderr
    assert received(stand_in, "CUDA_VISIBLE_DEVICES") == {6: "3,5"}


def run_dir_with(runs, name, *files):
    """runs/NAME holding these (empty) files; its path."""
    os.makedirs(runs / name)
    for file in files:
        (runs / name / file).write_text("")
    return runs / name


def test_a_run_directory_in_use_is_waited_for_and_one_without_checkpoint_taken_up(tmp_path, stand_in):
    from sweep import POLL_S

    runs = tmp_path / "runs"
    # seed 1: interrupted, and its directory still locked (as by a process on a node cut off from the cluster)
    in_use = run_dir_with(runs, "Pendulum-v1__lock__1__100", "checkpoint.pt", "events.out.tfevents.1")
    lock = os.open(in_use / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.write(lock, b"process 4242 on far-away\n")
    # seed 2: its process died before writing a checkpoint, and holds the lock no more
    abandoned = run_dir_with(runs, "Pendulum-v1__lock__2__100", "events.out.tfevents.1", "lock")
    sweep = subprocess.Popen(
        [sys.executable, os.path.join(BENCHMARKS, "sweep.py"), "--envs", "Pendulum-v1", "--seeds", "1", "2",
         "--jobs", "2", "--exp-name", "lock"],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True, env=stand_in.env(STAND_IN_REFUSE_RESUME_ONCE="1"),
    )  # fmt: skip
    deadline = time.time() + 60
    while not [r for r in stand_in.records() if "--seed" in r["argv"]]:  # seed 2 started
        assert sweep.poll() is None and time.time() < deadline, sweep.communicate()
        time.sleep(0.1)
    time.sleep(2 * POLL_S)  # seed 1 waits on
    released = time.time()
    os.close(lock)
    out, _ = sweep.communicate(timeout=60)
    assert sweep.returncode == 0 and "2 of 2 runs finished" in out, out

    assert f"Pendulum-v1 seed 1: runs/{in_use.name} is in use by process 4242 on far-away; waiting for it" in out
    (refused, resumed) = [r for r in stand_in.records() if "--resume" in r["argv"]]
    assert refused["refused"] and not resumed["refused"]  # refused once as ddpg.py refuses a lock race ...
    assert refused["time"] > released and resumed["argv"][:2] == ["--resume", f"runs/{in_use.name}"]
    assert "is in use by process 1 on elsewhere; one process writes a run at a time: trying again" in out  # ... then
    # started again
    assert not abandoned.exists() and f"seed 2: removed runs/{abandoned.name}: its run ended before its first" in out
    (started,) = [r for r in stand_in.records() if "--seed" in r["argv"]]
    assert started["argv"][:4] == ["--env-id", "Pendulum-v1", "--seed", "2"]  # from the start: nothing to resume


@pytest.mark.parametrize("seeds", [(1,), (2, 1)], ids=["run", "population"])
def test_waiting_for_a_run_directory_in_use_has_an_end(tmp_path, monkeypatch, seeds):
    import sweep

    monkeypatch.setattr(sweep, "LOCK_WAIT_S", 0.5)
    runs = tmp_path / "runs"
    in_use = run_dir_with(runs, "Pendulum-v1__wait__1__100", "checkpoint.pt")
    run_dir_with(runs, "Pendulum-v1__wait__2__100", "checkpoint.pt")  # a population's other member, free
    os.makedirs(runs / "sweep-logs")
    lock = os.open(in_use / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    said = []
    attempt = sweep.Attempt(str(runs), "wait", "Pendulum-v1", seeds, [], 1, {}, "", said.append)
    start = time.time()
    try:
        with pytest.raises(sweep.StillInUse, match=f"runs/{in_use.name} is in use by another process, still after"):
            while attempt.poll() is None:
                assert time.time() - start < 5, "waited on and on"
                time.sleep(0.05)
    finally:
        os.close(lock)
    assert time.time() - start > 0.5 and attempt.proc is None
    assert len(said) == 1 and "waiting for it to end" in said[0]


def documented_sweeps() -> list[list[str]]:
    """The arguments of every benchmarks/sweep.py command in the code blocks of the README and of the pages under docs/,
    and of `make sweep`."""
    pages = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
    blocks = [block for page in pages for block in open(page).read().split("```")[1::2]]
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    if shutil.which("make"):
        make = subprocess.run(["make", "-n", "sweep"], cwd=ROOT, capture_output=True, text=True, check=True)
        lines += make.stdout.splitlines()
    commands = [shlex.split(line.split("benchmarks/sweep.py", 1)[1], comments=True) for line in lines
                if "benchmarks/sweep.py" in line]  # fmt: skip
    assert len(commands) >= 5, "the README, the docs and the Makefile show fewer sweeps than expected"
    return commands


def test_every_documented_sweep_is_accepted_by_the_sweep_and_its_runs_options_by_ddpg(monkeypatch):
    import sweep
    import tyro

    import ddpg

    monkeypatch.setenv("WANDB_MODE", "offline")  # --track needs no login to be checked
    for command in documented_sweeps():
        monkeypatch.setattr(sys, "argv", ["sweep.py", *command])
        args = sweep.parse_args()  # refuses with SystemExit
        for env_id in args.envs:
            if "--track" in args.options_all and importlib.util.find_spec("wandb") is None:
                continue  # checked where wandb is installed (CI installs it)
            # what ddpg.py checks before it makes any environment: the preset's options and those after -- together
            ddpg.check_args(tyro.cli(ddpg.Args, args=["--env-id", env_id, *args.options_all]))
    assert sweep.PRESETS["mujoco"][:2] == ["--total-timesteps", "1000000"]  # CleanRL's budget, unless -- says other


def test_a_run_stops_when_the_process_that_started_it_dies(tmp_path, stand_in):
    # as when a Ray node is cut off and its worker dies: the run must stop, not train on beside its retry
    os.makedirs(tmp_path / "runs")
    start_and_stay = ("import os, sys, time, sweep; sweep.start_run(sys.argv[1], ['--env-id', 'Pendulum-v1'], "
                      "sweep.program((1,)), 1, dict(os.environ), open(os.devnull, 'w')); time.sleep(60)")  # fmt: skip
    starter = subprocess.Popen([sys.executable, "-c", start_and_stay, str(tmp_path / "runs")],
                               env=stand_in.env(BENCHMARKS, STAND_IN_LINGER="60"))  # fmt: skip
    try:
        deadline = time.time() + 30
        while not stand_in.records():
            assert starter.poll() is None and time.time() < deadline, "the run did not start"
            time.sleep(0.05)
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait()
        while not list(stand_in.dir.glob("*.sigterm")):
            assert time.time() < deadline, "the run went on after its starter died"
            time.sleep(0.05)
    finally:
        starter.kill()
        for record in stand_in.records():
            try:
                os.kill(record["pid"], signal.SIGKILL)
            except ProcessLookupError:  # it ended
                pass


def test_a_runs_dir_without_flock_locks_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    import sweep

    os.makedirs(tmp_path / "runs" / "sweep-logs")

    def no_locks(fd, operation):  # as on Lustre mounted without -o flock
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(sweep.fcntl, "flock", no_locks)
    with pytest.raises(SystemExit) as exit_:
        sweep.check_flock(str(tmp_path / "runs"))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"sweep.py: error: --runs-dir {tmp_path / 'runs'}: its file system refuses flock locks (")


def test_a_sweep_under_a_path_with_brackets_finds_its_finished_run(tmp_path):
    runs = tmp_path / "exp[1]" / "runs"  # [1] is no glob pattern here: the sweep must find this run again
    sweep = ("sweep.py", "--envs", "Pendulum-v1", "--seeds", "1", "--runs-dir", str(runs), "--exp-name", "e[2]", "--",
             *TINY)  # fmt: skip
    first = script(*sweep, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    again = script(*sweep, cwd=tmp_path)
    assert again.returncode == 0 and "Pendulum-v1 seed 1: already finished" in again.stdout
    assert len([name for name in os.listdir(runs) if name.startswith("Pendulum-v1__e[2]__1__")]) == 1


def test_a_long_populations_log_has_a_short_name_and_any_bytes_in_a_log_are_read(tmp_path):
    from sweep import log_path, tail

    assert log_path(str(tmp_path), "Pendulum-v1", "e", (1, 2)).endswith("/Pendulum-v1__e__1_2.log")
    path = log_path(str(tmp_path), "Pendulum-v1", "e", tuple(range(100, 161)))
    assert os.path.basename(path) == "Pendulum-v1__e__100_to_160.log"  # all 61 seeds would pass a name's 255 bytes
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"step 1\n\xff\xfe not UTF-8\n")
    assert tail(path, 5) == "step 1 | \ufffd\ufffd not UTF-8"
