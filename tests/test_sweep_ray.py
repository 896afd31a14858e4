"""The sweep on a local Ray instance: the local pool's results, a killed run retried to the same end, refusals."""

import glob
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, subprocess_env
from tests.test_checkpoints import all_scalars
from tests.test_cli import SCRIPT, SHORT_RUN
from tests.test_sweep_report import script

pytestmark = pytest.mark.xdist_group("ray")  # pytest-xdist runs the tests that start Ray on one worker, in turn

SWEEP = os.path.join(ROOT, "benchmarks", "sweep.py")
KILLED_RUN = ["--total-timesteps", "2000", "--learning-starts", "300", "--batch-size", "64", "--hidden-size", "32",
              "--eval-frequency", "500", "--eval-episodes", "2", "--checkpoint-frequency", "400",
              "--no-cuda"]  # fmt: skip
TIMING_TAG = "charts/SPS"  # the only logged value that depends on the machine's speed
REFUSAL_S = 20  # bad input is refused before torch trains anything; this leaves room for a busy machine
POLL_S = 0.05


def sweep(cwd, *args, first_on_path=(), env=None, timeout=None):
    os.makedirs(cwd, exist_ok=True)
    return script("sweep.py", *args, cwd=cwd, first_on_path=first_on_path, env=env, timeout=timeout)


def start_sweep(cwd, *args, env=None):
    """benchmarks/sweep.py ARGS, started in cwd; env: its environment (default: subprocess_env)."""
    os.makedirs(cwd, exist_ok=True)
    return subprocess.Popen([sys.executable, SWEEP, *args], cwd=cwd, env=env or subprocess_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def logged(cwd, exp_name):
    """{seed: {tag: [(step, value), ...]}} of the runs of `exp_name` under cwd/runs, timing left out."""
    runs = {}
    for run_dir in glob.glob(str(cwd / "runs" / f"Pendulum-v1__{exp_name}__*")):
        seed = int(os.path.basename(run_dir).split("__")[2])
        assert seed not in runs, f"two run directories for seed {seed}"
        runs[seed] = {tag: events for tag, events in all_scalars(run_dir).items() if tag != TIMING_TAG}
    return runs


def test_ray_gives_the_local_pools_results(tmp_path):
    pytest.importorskip("ray")
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # what the local pool gives each of --jobs 2 runs
    common = ["--envs", "Pendulum-v1", "--seeds", "1", "2", "--exp-name", "same"]
    # started as from anywhere, the project nowhere on PYTHONPATH: the sweep and its Ray workers find ddpg.py themselves
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    local = start_sweep(tmp_path / "local", *common, "--jobs", "2", "--", *SHORT_RUN, env=env)
    on_ray = start_sweep(tmp_path / "ray", *common, "--ray", "--cpus-per-run", str(threads), "--", *SHORT_RUN, env=env)
    for proc in (local, on_ray):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "2 of 2 runs finished" in out, err
    assert "] start Pendulum-v1 seed 1 on " in out and "[2/2 done] " in out  # the Ray sweep's progress

    local_runs, ray_runs = logged(tmp_path / "local", "same"), logged(tmp_path / "ray", "same")
    assert sorted(ray_runs) == [1, 2]
    for seed in (1, 2):
        assert [step for step, _ in ray_runs[seed]["eval/episodic_return"]] == [300, 600]
        assert ray_runs[seed] == local_runs[seed]  # every logged value at every step, final evaluation included


def ddpg_pids(cwd, env_id):
    """Processes running ddpg.py in the directory cwd, started or resumed on env_id."""
    pids = []
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            args = open(f"{proc}/cmdline", "rb").read().split(b"\0")
            on_env = any(env_id.encode() in arg for arg in args)
            if os.readlink(f"{proc}/cwd") == str(cwd) and args[1:2] == [SCRIPT.encode()] and on_env:
                pids.append(int(os.path.basename(proc)))
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return pids


def wait_for(condition, proc, what):
    deadline = time.time() + 120
    while not condition():
        assert proc.poll() is None and time.time() < deadline, f"{what}: {proc.communicate()}"
        time.sleep(POLL_S)


def test_a_run_killed_on_ray_is_retried_and_ends_as_if_never_killed(tmp_path):
    pytest.importorskip("ray")
    sweep_dir, reference_dir = tmp_path / "sweep", tmp_path / "reference"
    os.makedirs(reference_dir)
    reference = subprocess.Popen(
        [sys.executable, SCRIPT, *KILLED_RUN, "--seed", "1", "--exp-name", "killed",
         "--save-model", "--threads", "1"],
        cwd=reference_dir, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # with a run that fails at once, which is not retried: an error in a run or its options would happen again
    on_ray = start_sweep(sweep_dir, "--envs", "Pendulum-v1", "NoSuchEnv-v0", "--seeds", "1", "--exp-name", "killed",
                         "--ray", "--", *KILLED_RUN)  # fmt: skip
    checkpoint = str(sweep_dir / "runs" / "Pendulum-v1__killed__1__*" / "checkpoint.pt")
    wait_for(lambda: glob.glob(checkpoint), on_ray, "no first checkpoint")
    (pid,) = ddpg_pids(sweep_dir, "Pendulum-v1")
    os.kill(pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does

    # then, once the resumed run wrote a checkpoint, its Ray worker is lost (the run's process goes with it)
    (checkpoint,) = glob.glob(checkpoint)
    first_write = os.stat(checkpoint).st_mtime_ns
    wait_for(lambda: os.stat(checkpoint).st_mtime_ns != first_write, on_ray, "no checkpoint after the retry")
    (pid,) = ddpg_pids(sweep_dir, "Pendulum-v1")
    worker = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])  # the parent of ddpg.py
    os.kill(worker, signal.SIGKILL)
    out, err = on_ray.communicate(timeout=180)
    assert on_ray.returncode == 1 and "1 of 2 runs finished, 1 failed" in out, err
    assert "NoSuchEnv-v0 seed 1: FAILED with exit status 2" in out and "NoSuchEnv-v0 seed 1 was" not in out
    assert "Pendulum-v1 seed 1 was killed by SIGKILL: retry 1 of 3, from its last checkpoint" in out
    assert "Pendulum-v1 seed 1 was lost with its worker (WorkerCrashedError): retry 2 of 3" in out
    assert "Pendulum-v1 seed 1: finished (resume, " in out and "resumed after 2 retries\n" in out
    assert "] resume Pendulum-v1 seed 1 on " in out
    (run_dir,) = glob.glob(str(sweep_dir / "runs" / "Pendulum-v1__killed__1__*"))
    log = open(os.path.join(sweep_dir, "runs", "sweep-logs", "Pendulum-v1__killed__1.log")).read()
    assert log.count(f"resuming runs/{os.path.basename(run_dir)} at step ") == 2  # from checkpoints, not from scratch

    assert reference.wait(timeout=120) == 0, reference.stderr.read()
    killed, left_alone = logged(sweep_dir, "killed")[1], logged(reference_dir, "killed")[1]
    for tag, events in killed.items():
        steps = [step for step, _ in events]
        assert steps == sorted(set(steps)), f"{tag}: a step logged twice"
    assert killed["eval/episodic_return"][-1][0] == 2000
    assert killed == left_alone  # the same episodes, losses and evaluations, final evaluation included


def assert_refused_quickly_in_one_line(result, seconds, needle, cwd):
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("sweep.py: error: ") and needle in result.stderr
    assert seconds < REFUSAL_S
    assert not (cwd / "runs").exists()  # refused before anything was written


def test_ray_not_installed_is_refused_in_one_line(tmp_path):
    fake = tmp_path / "fake" / "ray"
    os.makedirs(fake)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")  # as if ray were missing
    start = time.time()
    result = sweep(tmp_path, "--envs", "Pendulum-v1", "--ray", first_on_path=[str(tmp_path / "fake")])
    assert_refused_quickly_in_one_line(result, time.time() - start, "--ray needs ray, which is not installed", tmp_path)


def test_an_address_nobody_answers_at_is_refused_in_one_line(tmp_path):
    pytest.importorskip("ray")  # without ray, the refusal is the one above
    with socket.socket() as s:  # a loopback port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.time()
    result = sweep(tmp_path, "--envs", "Pendulum-v1", "--ray-address", f"127.0.0.1:{port}")
    needle = f"--ray-address 127.0.0.1:{port}: no Ray cluster answers there"
    assert_refused_quickly_in_one_line(result, time.time() - start, needle, tmp_path)


def test_a_runs_exit_status_says_how_it_ended():
    import sweep as sweep_module

    ending = sweep_module.ending
    assert ending(0) == sweep_module.FINISHED
    for status in (130, 143, -signal.SIGINT, -signal.SIGTERM):  # checkpoint kept on purpose: no retry
        assert ending(status) == sweep_module.INTERRUPTED
    for status in (-signal.SIGKILL, -signal.SIGSEGV):  # killed from outside: retried from its checkpoint
        assert ending(status) == sweep_module.KILLED
    for status in (1, 2):  # an error in the run or its options would only happen again
        assert ending(status) == sweep_module.FAILED


def test_a_run_can_be_interrupted_even_if_its_starter_blocks_sigint(tmp_path):
    import sweep as sweep_module

    runs_dir = tmp_path / "runs"
    os.makedirs(runs_dir)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # as a Ray worker runs its tasks
    try:
        with open(tmp_path / "run.log", "w") as log:
            proc = sweep_module.start_run(
                str(runs_dir), ["--env-id", "Pendulum-v1"], sweep_module.program((1,)), 1, subprocess_env(), log
            )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    with open(f"/proc/{proc.pid}/status") as f:
        mask = int(next(line.split()[1] for line in f if line.startswith("SigBlk:")), 16)
    proc.kill()
    proc.wait()
    assert not mask & (1 << (signal.SIGINT - 1)), "the run would never see Ctrl-C"


def test_on_ray_a_cuda_run_gets_a_gpu_by_default_and_is_never_hidden_from_the_gpus(tmp_path, stand_in):
    pytest.importorskip("ray")
    env = stand_in.env(RAY_OVERRIDE_RESOURCES='{"GPU": 2}', STAND_IN_LINGER="5")  # Ray counts 2 GPUs on this node;
    env.pop("CUDA_VISIBLE_DEVICES", None)  # the runs linger so that they hold their GPUs at the same time
    common = ["--envs", "Pendulum-v1", "--seeds", "1", "2", "--exp-name", "gpus", "--ray"]
    result = sweep(tmp_path / "default", *common, env=env)  # ddpg.py's default is --cuda
    assert result.returncode == 0 and "2 of 2 runs finished" in result.stdout, result.stdout + result.stderr
    assert "GPUs: 1 per run, of 2 in the cluster" in result.stdout
    records = stand_in.records()
    assert {r["CUDA_VISIBLE_DEVICES"] for r in records} == {"0", "1"}  # what each run's process received
    assert [r["WANDB_RUN_GROUP"] for r in records] == ["gpus", "gpus"]

    start = time.time()
    result = sweep(tmp_path / "zero", *common, "--gpus-per-run", "0", env=env)  # no GPU reserved for CUDA runs
    needle = "--gpus-per-run 0: the runs use CUDA (ddpg.py's default --cuda) and the Ray cluster has 2 GPUs"
    assert_refused_quickly_in_one_line(result, time.time() - start, needle, tmp_path / "zero")

    start = time.time()
    result = sweep(tmp_path / "big", *common, "--gpus-per-run", "3", env=env, timeout=REFUSAL_S)  # or wait forever
    needle = "--cpus-per-run 1 --gpus-per-run 3: no node of the Ray cluster has that much (its nodes: "
    assert_refused_quickly_in_one_line(result, time.time() - start, needle, tmp_path / "big")
