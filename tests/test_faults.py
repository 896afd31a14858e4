"""Faults a run meets outside DDPG: a full disk, a place it cannot write, a second process on its directory, a kill.

After each, the run says what happened in one line, leaves no partial file, and its last good checkpoint resumes
to the same end as a run that never failed.
"""

import contextlib
import errno
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import ddpg
from tests.conftest import subprocess_env
from tests.test_checkpoints import FIRST_CHECKPOINT_STEP, RUN, all_scalars, saved_weights
from tests.test_cli import SCRIPT, assert_refused_in_one_line, run_cli

TIMING_TAG = "charts/SPS"  # the one logged value that depends on the machine's speed
LOCK_REFUSAL_S = 20  # a second process on a run directory is refused before any training; room for a busy machine
POLL_S = 0.05
LOGGED_BEFORE_THE_DISK_FILLS = 10  # TensorBoard records written before the injected full disk


@pytest.fixture(scope="module")
def uninterrupted(whole_run):
    """The run that nothing disturbs: its saved weights and every logged value (timing left out)."""
    return saved_weights(whole_run), logged(whole_run)


def logged(run_dir):
    return {tag: events for tag, events in all_scalars(run_dir).items() if tag != TIMING_TAG}


def assert_same_end(run_dir, uninterrupted):
    weights, logs = uninterrupted
    resumed = saved_weights(run_dir)
    for net in ("actor", "critic"):
        for name, tensor in weights[net].items():
            assert torch.equal(tensor, resumed[net][name]), f"{net}.{name}"
    assert logged(run_dir) == logs  # every value at the same steps, none twice


def start(cwd, *cli_args, env=None):
    return subprocess.Popen([sys.executable, SCRIPT, *cli_args], cwd=cwd, env=env or subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for_checkpoint(cwd, proc):
    deadline = time.time() + 600
    while not glob.glob(str(cwd / "runs" / "*" / ddpg.CHECKPOINT_FILE)):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(POLL_S)
    (run_dir,) = glob.glob(str(cwd / "runs" / "*"))
    return run_dir


@contextlib.contextmanager
def mounted_tmpfs(path, size):
    """A small file system of its own at `path` (root only): what fills up is that, not the machine's disk."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_full_disk_stops_the_run_in_one_line_and_its_last_checkpoint_resumes_exactly(tmp_path, uninterrupted):
    with mounted_tmpfs(tmp_path / "small", "8m") as disk:
        proc = start(disk, *RUN, "--exp-name", "full")
        run_dir = wait_for_checkpoint(disk, proc)
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:  # take every free page: the run's next write fails
                f.write(b"\0" * 4096)
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 1
        (line,) = stderr.strip().splitlines()
        assert line.startswith("ddpg.py: error: step ") and "No space left on device; training stopped" in line
        assert f"cannot write {os.path.join('runs', os.path.basename(run_dir))}" in line  # names the path
        assert f"resume with: python {SCRIPT} --resume runs/{os.path.basename(run_dir)}" in line
        assert "Traceback" not in stderr
        assert not glob.glob(os.path.join(run_dir, "*.tmp")) and not glob.glob(os.path.join(run_dir, "**", "*.tmp"))
        checkpoint = torch.load(os.path.join(run_dir, ddpg.CHECKPOINT_FILE), weights_only=True)  # intact
        assert FIRST_CHECKPOINT_STEP <= checkpoint["global_step"] < 2000

        os.remove(filler)  # room again: the run goes on from its last good checkpoint
        resumed = run_cli(disk, "--resume", os.path.join("runs", os.path.basename(run_dir)))
        assert resumed.returncode == 0, resumed.stderr
        assert_same_end(run_dir, uninterrupted)


def test_a_failed_checkpoint_write_stops_the_run_and_keeps_the_previous_checkpoint(in_tmp, monkeypatch, capsys):
    real_save, saves = torch.save, []

    def fail_second_checkpoint(obj, f):  # as torch fails on a full disk: a RuntimeError while handling the OSError
        saves.append(obj["global_step"])
        real_save(obj, f)
        if len(saves) == 2:
            try:
                raise OSError(errno.ENOSPC, "No space")
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None

    monkeypatch.setattr(torch, "save", fail_second_checkpoint)
    args = ddpg.Args(cuda=False, total_timesteps=900, learning_starts=300, batch_size=64, hidden_size=16,
                     checkpoint_frequency=300, eval_frequency=900, eval_episodes=1)  # fmt: skip
    out = ddpg.train(args)
    assert out["status"] == 1 and saves == [300, 600]
    (line,) = capsys.readouterr().err.strip().splitlines()
    path = os.path.join(out["run_dir"], ddpg.CHECKPOINT_FILE)
    assert line == (f"ddpg.py: error: step 600: cannot write {path}.tmp: No space; training stopped (the last good "
                    f"checkpoint is {path}; resume with: python {sys.argv[0]} --resume {out['run_dir']})")  # fmt: skip
    assert torch.load(path, weights_only=True)["global_step"] == 300
    assert not any(name.endswith(".tmp") for name in os.listdir(out["run_dir"]))


FAIL_LOG_WRITES = """
import errno, os
from tensorboard.summary.writer.record_writer import RecordWriter
real_write, writes = RecordWriter.write, []
def fail_later(self, data):
    writes.append(len(data))
    if len(writes) > {after}:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real_write(self, data)
RecordWriter.write = fail_later
"""


def test_a_failed_log_write_stops_the_run_in_one_line(tmp_path):
    # TensorBoard writes from a thread of its own: a full disk fails there first, and the run hears of it next time
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text(FAIL_LOG_WRITES.format(after=LOGGED_BEFORE_THE_DISK_FILLS))
    result = run_cli(tmp_path, *RUN, "--checkpoint-frequency", "0", env=subprocess_env(str(fake)))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()  # no traceback of the writer's thread either
    (run_dir,) = glob.glob(os.path.join("runs", "*"), root_dir=tmp_path)
    assert line.endswith(f": cannot write {run_dir}: No space left on device; training stopped (no checkpoint)")


def test_a_runs_path_that_is_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "runs").write_text("not a directory")
    result = run_cli(tmp_path, "--env-id", "tests.envs:Announced-v0")
    assert result.returncode == 2 and "made an environment" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == ["ddpg.py: error: runs: not a directory, but training writes its runs there"], result.stderr
    assert (tmp_path / "runs").read_text() == "not a directory"


@contextlib.contextmanager
def read_only(path):
    """`path` made read-only for this process, root included (a read-only bind mount); else by its mode bits."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", "-l", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)


def test_a_place_the_run_cannot_write_is_refused_before_any_work(tmp_path):
    cwd = tmp_path / "ro"
    cwd.mkdir()
    with read_only(cwd):
        result = run_cli(cwd, "--env-id", "tests.envs:Announced-v0")
    assert_refused_in_one_line(result, f"{cwd}: this process cannot write there", cwd)
    assert "made an environment" not in result.stdout


def test_a_run_directory_it_cannot_write_is_not_resumed(tmp_path):
    result = run_cli(tmp_path, *RUN, "--total-timesteps", "400", "--learning-starts", "300", "--exp-name", "ro")
    assert result.returncode == 0, result.stderr
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    os.remove(os.path.join(run_dir, ddpg.MODEL_FILE))  # as if stopped before the end
    checkpoint = torch.load(os.path.join(run_dir, ddpg.CHECKPOINT_FILE), weights_only=True)
    checkpoint["args"]["total_timesteps"] = 800
    torch.save(checkpoint, os.path.join(run_dir, ddpg.CHECKPOINT_FILE))
    with read_only(tmp_path / "runs"):
        resumed = run_cli(tmp_path, "--resume", run_dir)
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr
    assert resumed.stderr.strip().splitlines() == [f"ddpg.py: error: {run_dir}: this process cannot write there "
                                                   "(permissions, read-only)"]  # fmt: skip


# Imported first by the first process (PYTHONPATH): its second checkpoint waits, so that it surely still runs, and
# holds its lock, when the second process starts (a fast machine could otherwise finish the run before).
SLOW_SECOND_CHECKPOINT = f"""
import time, torch
real_save, saves = torch.save, []
def save(obj, f):
    saves.append(f)
    if len(saves) == 2:
        time.sleep({LOCK_REFUSAL_S})
    real_save(obj, f)
torch.save = save
"""


def test_a_second_process_on_a_running_run_is_refused_and_the_first_ends_undisturbed(tmp_path, uninterrupted):
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "sitecustomize.py").write_text(SLOW_SECOND_CHECKPOINT)
    first = start(tmp_path, *RUN, "--exp-name", "locked", env=subprocess_env(str(tmp_path / "slow")))
    run_dir = wait_for_checkpoint(tmp_path, first)
    started = time.time()
    second = run_cli(tmp_path, "--resume", run_dir)
    assert time.time() - started < LOCK_REFUSAL_S
    assert second.returncode == ddpg.EXIT_IN_USE
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith(f"ddpg.py: error: {run_dir} is in use by process {first.pid} on ")
    assert line.endswith("; one process writes a run at a time")
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert_same_end(run_dir, uninterrupted)


KILL_IN_SECOND_CHECKPOINT = """
import os, signal, time, torch
from tensorboard.summary.writer.record_writer import RecordWriter
real_save, saves = torch.save, []
def save(obj, f):
    saves.append(f)
    if len(saves) == 2:  # the logs up to this step are on disk, this checkpoint is not: the worst moment to die
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, f)
torch.save = save
real_write = RecordWriter.write
def slow_write(self, data):  # the writer's thread lags behind the run: only a flush catches it up
    time.sleep(0.01)
    real_write(self, data)
RecordWriter.write = slow_write
"""


def test_a_killed_run_frees_its_directory_and_resumes_to_the_same_end(tmp_path, uninterrupted):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text(KILL_IN_SECOND_CHECKPOINT)
    killed = run_cli(tmp_path, *RUN, "--exp-name", "killed", env=subprocess_env(str(fake)))
    assert killed.returncode == -signal.SIGKILL
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    checkpoint = torch.load(os.path.join(run_dir, ddpg.CHECKPOINT_FILE), weights_only=True)
    assert checkpoint["global_step"] == FIRST_CHECKPOINT_STEP
    # every step up to the checkpoint that failed was logged (a checkpoint waits for the logs), some after the last
    assert max(step for step, _ in all_scalars(run_dir)["losses/qf1_loss"]) == 2 * FIRST_CHECKPOINT_STEP
    resumed = run_cli(tmp_path, "--resume", run_dir)  # the kernel released the dead process's lock
    assert resumed.returncode == 0, resumed.stderr
    assert_same_end(run_dir, uninterrupted)  # the steps logged after step 400 are logged once, as before


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    result = run_cli(tmp_path, *RUN, "--total-timesteps", "400", "--exp-name", "done")
    assert result.returncode == 0, result.stderr
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    before = {name: os.stat(os.path.join(run_dir, name)).st_mtime_ns for name in os.listdir(run_dir)}
    again = run_cli(tmp_path, "--resume", run_dir)
    assert again.returncode == 0 and again.stderr == ""
    assert again.stdout.strip().splitlines() == [f"{run_dir} has finished (it holds model.pt): nothing to train"]
    # stopped after its final checkpoint but before its model.pt: the final checkpoint says it all the same, and the
    # model.pt it missed is written from it
    saved = torch.load(os.path.join(run_dir, ddpg.MODEL_FILE), weights_only=True)
    os.remove(os.path.join(run_dir, ddpg.MODEL_FILE))
    busy = ddpg.lock_run_dir(run_dir)  # as if the run's own process were about to write it
    refused = run_cli(tmp_path, "--resume", run_dir)
    os.close(busy)
    assert refused.returncode == ddpg.EXIT_IN_USE and " is in use by " in refused.stderr
    assert not os.path.exists(os.path.join(run_dir, ddpg.MODEL_FILE))
    again = run_cli(tmp_path, "--resume", run_dir)
    assert again.returncode == 0
    assert again.stdout.strip().splitlines() == [f"{run_dir} has finished (step 400/400): nothing to train"]
    rewritten = torch.load(os.path.join(run_dir, ddpg.MODEL_FILE), weights_only=True)
    assert rewritten["args"] == saved["args"] and rewritten["spaces"] == saved["spaces"]
    for net in ("actor", "critic"):
        assert all(torch.equal(rewritten["agent"][net][k], v) for k, v in saved["agent"][net].items())
    before.pop(ddpg.MODEL_FILE)
    before.pop(ddpg.LOCK_FILE)  # it names the process that wrote model.pt
    after = {name: os.stat(os.path.join(run_dir, name)).st_mtime_ns for name in os.listdir(run_dir)}
    assert {name: after[name] for name in before} == before  # nothing else was touched


def resumable_run():
    """A short run's directory, whose checkpoint asks for more steps than it made: resuming it opens the run."""
    args = ddpg.Args(cuda=False, total_timesteps=400, learning_starts=100, batch_size=32, hidden_size=16,
                     eval_frequency=400, eval_episodes=1, checkpoint_frequency=200, save_model=False)  # fmt: skip
    run_dir = ddpg.train(args)["run_dir"]
    path = os.path.join(run_dir, ddpg.CHECKPOINT_FILE)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["args"]["total_timesteps"] = 600
    torch.save(checkpoint, path)
    return run_dir


def test_a_checkpoint_replaced_while_a_resume_starts_is_refused(in_tmp):
    run_dir = resumable_run()
    path = os.path.join(run_dir, ddpg.CHECKPOINT_FILE)
    setup = ddpg.checked(ddpg.Args(resume=(run_dir,)))  # read, not yet locked ...
    ddpg.save_atomic(torch.load(path, weights_only=True), path)  # ... when the run's own process writes another
    with pytest.raises(ddpg.RunInUse, match="was in use: its process wrote a checkpoint while this one started"):
        ddpg.RunDir(setup.args, setup.checkpoint)
    os.close(ddpg.lock_run_dir(run_dir))  # the refused start let go of it


def test_a_resumed_run_that_fails_to_open_its_logs_lets_go_of_its_directory(in_tmp, monkeypatch):
    run_dir = resumable_run()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), run_dir)

    monkeypatch.setattr(ddpg, "SummaryWriter", disk_full)  # after the lock and the evaluation envs
    with pytest.raises(ddpg.Stopped) as stopped:  # it said so, in one line
        ddpg.train(ddpg.Args(resume=(run_dir,)))
    assert stopped.value.status == ddpg.EXIT_FAILED and isinstance(stopped.value.__cause__, OSError)
    os.close(ddpg.lock_run_dir(run_dir))  # not "in use": the failed start let go of it
