"""Checkpoints: exact resume after a real signal, atomic writes, refusal of bad files, stop on non-finite values."""

import dataclasses
import errno
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import ddpg
import population
from tests.conftest import subprocess_env
from tests.envs import HORIZON, NAN_AFTER, PAUSE_AT, PAUSE_FILE, PAUSE_S
from tests.test_cli import SCRIPT, assert_refused_in_one_line, run_cli, run_main, scalars
from tests.test_units import rows

RUN = ["--total-timesteps", "2000", "--learning-starts", "300", "--batch-size", "64", "--hidden-size", "32",
       "--eval-frequency", "500", "--eval-episodes", "2", "--checkpoint-frequency", "400", "--save-model",
       "--no-cuda"]  # fmt: skip
FIRST_CHECKPOINT_STEP = 400
POLL_S = 0.05
SECOND_SIGNAL_AFTER_S = 1.0  # a second Ctrl-C this long after the first (again, until the run ends)
# Pause-v0 stops in its step PAUSE_AT (350), after the periodic checkpoint of step 200 and with steps logged since.
# One thread: networks this small gain nothing from more, and lose much on a machine busy with other work.
ONE_THREAD = ["--threads", "1"]
PAUSED_RUN = ["--env-id", "tests.envs:Pause-v0", "--total-timesteps", "500", "--learning-starts", "50",
              "--batch-size", "16", "--hidden-size", "8", "--eval-frequency", "100", "--eval-episodes", "1",
              "--checkpoint-frequency", "200", "--save-model", "--no-cuda", *ONE_THREAD]  # fmt: skip
PAUSED_CHECKPOINT_STEP = 200


def start_and_signal(cwd, exp_name, signum):
    """Start a run, wait for its first periodic checkpoint, then send it `signum` mid-training."""
    env = subprocess_env()
    proc = subprocess.Popen([sys.executable, SCRIPT, *RUN, "--exp-name", exp_name], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while not glob.glob(str(cwd / "runs" / f"*{exp_name}*" / ddpg.CHECKPOINT_FILE)):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(POLL_S)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    (run_dir,) = glob.glob(str(cwd / "runs" / f"*{exp_name}*"))
    return proc.returncode, stdout, run_dir


def default_ctrl_c() -> None:
    """In the child, before it starts: Ctrl-C's usual action, as from a terminal (a shell's background job, as under
    nohup or &, hands its children SIGINT ignored, and a run hands its second Ctrl-C to what it found)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_paused(cwd, exp_name):
    """Start a run of Pause-v0 and wait until it is paused in its step PAUSE_AT; returns the process and run dir."""
    marker = cwd / f"{exp_name}.paused"
    proc = subprocess.Popen([sys.executable, SCRIPT, *PAUSED_RUN, "--exp-name", exp_name], cwd=cwd,
                            env=subprocess_env(**{PAUSE_FILE: str(marker)}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_ctrl_c)  # fmt: skip
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(POLL_S)
    (run_dir,) = glob.glob(str(cwd / "runs" / f"*{exp_name}*"))
    return proc, run_dir


def ctrl_c_at_each_evaluation(monkeypatch):
    """Every evaluation of ddpg.train starts with a Ctrl-C (SIGINT), which the run catches: it checkpoints at the end
    of that step and stops. Returns the real `evaluate`, to put back."""
    real_evaluate = ddpg.evaluate

    def evaluate_then_ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(ddpg, "evaluate", evaluate_then_ctrl_c)
    return real_evaluate


def checkpoint_step(run_dir):
    return torch.load(os.path.join(run_dir, ddpg.CHECKPOINT_FILE), weights_only=True)["global_step"]


def all_scalars(run_dir):
    _, logged = scalars(run_dir)
    return {tag: [(e.step, e.value) for e in events] for tag, events in logged.items()}


def saved_weights(run_dir):
    return torch.load(os.path.join(run_dir, ddpg.MODEL_FILE), weights_only=True)["agent"]


def test_run_interrupted_by_sigint_and_resumed_equals_the_run_left_alone(tmp_path, whole_run):
    whole_dir = whole_run

    status, stdout, cut_dir = start_and_signal(tmp_path, "cut", signal.SIGINT)
    assert status == 128 + signal.SIGINT
    step = checkpoint_step(cut_dir)
    assert FIRST_CHECKPOINT_STEP < step < 2000  # stopped mid-run, after the periodic checkpoint
    assert f"SIGINT at step {step}: checkpoint saved to {os.path.join('runs', os.path.basename(cut_dir))}" in stdout
    assert f"--resume {os.path.join('runs', os.path.basename(cut_dir))}" in stdout
    assert not os.path.exists(os.path.join(cut_dir, ddpg.MODEL_FILE))

    resumed = run_cli(tmp_path, "--resume", os.path.join("runs", os.path.basename(cut_dir)))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming runs/{os.path.basename(cut_dir)} at step {step}/2000" in resumed.stdout

    whole_weights, cut_weights = saved_weights(whole_dir), saved_weights(cut_dir)
    for net in ("actor", "critic"):
        for name, tensor in whole_weights[net].items():
            assert torch.equal(tensor, cut_weights[net][name]), f"{net}.{name}"
    whole_logs, cut_logs = all_scalars(whole_dir), all_scalars(cut_dir)
    for tag in ("charts/episodic_return", "charts/episodic_length", "eval/episodic_return", ddpg.EVAL_Q_TAG,
                ddpg.EVAL_DISCOUNTED_TAG, "losses/qf1_loss"):  # fmt: skip
        assert cut_logs[tag] == whole_logs[tag], tag  # same values at the same steps, none twice
    for tag, events in cut_logs.items():
        steps = [s for s, _ in events]
        assert steps == sorted(set(steps)), tag


def test_sigterm_checkpoint_is_evaluated_with_video(tmp_path):
    status, stdout, run_dir = start_and_signal(tmp_path, "term", signal.SIGTERM)
    assert status == 128 + signal.SIGTERM and "SIGTERM at step" in stdout
    path = os.path.join(run_dir, ddpg.CHECKPOINT_FILE)
    result = run_cli(tmp_path, "--eval-checkpoint", path, "--eval-episodes", "3", "--capture-video", "--no-cuda")
    assert result.returncode == 0, result.stderr
    assert len(glob.glob(os.path.join(run_dir, "videos", "*.mp4"))) == 3
    assert "WARN" not in result.stderr  # one folder for the three episodes' videos is no overwrite

    # the printed figures are those of the saved actor, evaluated the same way here
    checkpoint = torch.load(path, weights_only=True)
    obs_dim, action_space = ddpg.check_env("Pendulum-v1")
    actor = ddpg.Actor(obs_dim, action_space, hidden_size=32)
    actor.load_state_dict(checkpoint["agent"]["actor"])
    critic = ddpg.Critic(obs_dim, action_space.shape[0], hidden_size=32)
    critic.load_state_dict(checkpoint["agent"]["critic"])
    envs = ddpg.make_eval_envs("Pendulum-v1", num_episodes=3, seed=ddpg.Args().seed)
    returns = ddpg.evaluate(actor, critic, envs, ddpg.Args().gamma, torch.device("cpu")).returns
    assert f"Pendulum-v1: {returns.mean():.1f} +- {returns.std():.1f} over 3 episodes" in result.stdout


def test_a_crash_during_a_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    path = str(tmp_path / ddpg.CHECKPOINT_FILE)
    ddpg.save_atomic({"global_step": 1}, path)
    real_save = torch.save

    def crash_midway(obj, f):
        real_save(obj, f)
        f.truncate(10)  # half-written
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="No space left on device"):
        ddpg.save_atomic({"global_step": 2}, path)
    assert torch.load(path, weights_only=True) == {"global_step": 1}
    assert os.listdir(tmp_path) == [ddpg.CHECKPOINT_FILE]  # no partial file left behind


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ckpt")
    result = run_cli(cwd, "--total-timesteps", "400", "--learning-starts", "300", "--batch-size", "64", "--hidden-size",
                     "32", "--eval-episodes", "1", "--checkpoint-frequency", "400", "--no-cuda")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = glob.glob(str(cwd / "runs" / "*"))
    return run_dir


def altered_checkpoint(checkpoint_dir, tmp_path, change):
    checkpoint = torch.load(os.path.join(checkpoint_dir, ddpg.CHECKPOINT_FILE), weights_only=True)
    checkpoint["args"]["total_timesteps"] *= 2  # not finished: --resume would go on
    change(checkpoint)
    run_dir = tmp_path / "altered"
    run_dir.mkdir()
    torch.save(checkpoint, run_dir / ddpg.CHECKPOINT_FILE)
    return str(run_dir / ddpg.CHECKPOINT_FILE)


def other_env(checkpoint):
    checkpoint["args"]["env_id"] = "InvertedPendulum-v5"  # 4 observations, actions in [-3, 3]


def other_size(checkpoint):
    checkpoint["args"]["hidden_size"] = 64


@pytest.mark.parametrize("change, message", [(other_env, "saved for spaces"), (other_size, "--hidden-size 64")])
@pytest.mark.parametrize("mode", ["--eval-checkpoint", "--resume"])
def test_checkpoint_for_other_env_or_sizes_is_refused(checkpoint_dir, tmp_path, change, message, mode):
    path = altered_checkpoint(checkpoint_dir, tmp_path, change)
    result = run_cli(tmp_path, mode, path if mode == "--eval-checkpoint" else os.path.dirname(path))
    assert_refused_in_one_line(result, message, tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_damaged_checkpoint_is_refused(checkpoint_dir, tmp_path, damage):
    data = open(os.path.join(checkpoint_dir, ddpg.CHECKPOINT_FILE), "rb").read()
    content = {"garbage": b"not a checkpoint" * 100, "truncated": data[: len(data) // 2], "empty": b""}[damage]
    path = tmp_path / ddpg.CHECKPOINT_FILE
    path.write_bytes(content)
    result = run_cli(tmp_path, "--eval-checkpoint", str(path))
    assert_refused_in_one_line(result, "not a readable ddpg.py checkpoint", tmp_path)


def test_resume_of_a_directory_without_checkpoint_is_refused(tmp_path):
    result = run_cli(tmp_path, "--resume", str(tmp_path))
    assert_refused_in_one_line(result, f"no {ddpg.CHECKPOINT_FILE} in that directory", tmp_path)


def test_resume_of_a_runs_checkpoint_file_resumes_its_run_and_another_file_is_refused(tmp_path):
    tiny = ["--env-id", "tests.envs:Counter-v0", "--learning-starts", str(2 * HORIZON), "--batch-size", str(HORIZON),
            "--hidden-size", "8", "--eval-episodes", "1", "--no-cuda"]  # fmt: skip
    assert run_main(tmp_path, *tiny, "--total-timesteps", str(4 * HORIZON)).returncode == 0
    (run_name,) = os.listdir(tmp_path / "runs")
    run_dir = os.path.join("runs", run_name)
    resumed = run_main(tmp_path, "--resume", os.path.join(run_dir, ddpg.CHECKPOINT_FILE),
                       "--total-timesteps", str(6 * HORIZON))  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run_dir} at step {4 * HORIZON}/{6 * HORIZON}" in resumed.stdout
    assert os.listdir(tmp_path / "runs") == [run_name] and checkpoint_step(tmp_path / run_dir) == 6 * HORIZON
    refused = run_main(tmp_path, "--resume", os.path.join(run_dir, ddpg.MODEL_FILE))
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (
        f"ddpg.py: error: --resume {os.path.join(run_dir, ddpg.MODEL_FILE)}: a file; give the run directory (the one "
        f"that holds {ddpg.CHECKPOINT_FILE})"
    )


def test_nonfinite_loss_stops_training_and_keeps_the_last_good_checkpoint(in_tmp, capsys):
    args = ddpg.Args(env_id="tests.envs:NanReward-v0", cuda=False, total_timesteps=2000, learning_starts=100,
                     batch_size=64, hidden_size=16, checkpoint_frequency=100, eval_frequency=100,
                     eval_episodes=1)  # fmt: skip
    out = ddpg.train(args)
    assert out["status"] == 1
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert " is not finite; training stopped (the last good checkpoint is " in line
    failed_at = int(line.split("step ")[1].split(":")[0])
    assert NAN_AFTER < failed_at <= NAN_AFTER + ddpg.LOG_INTERVAL
    checkpoint = torch.load(os.path.join(out["run_dir"], ddpg.CHECKPOINT_FILE), weights_only=True)
    assert checkpoint["global_step"] < failed_at
    assert all(torch.isfinite(p).all() for p in checkpoint["agent"]["actor"].values())
    assert all(torch.isfinite(p).all() for p in checkpoint["agent"]["critic"].values())


def test_a_second_ctrl_c_stops_at_once_and_leaves_the_last_checkpoint(tmp_path):
    proc, run_dir = start_paused(tmp_path, "twice")
    proc.send_signal(signal.SIGINT)  # the first: the run would finish its step (paused), then checkpoint
    deadline = time.time() + PAUSE_S / 2
    while True:  # the next ones, until one arrives after the first was handled (two at once are one to the kernel)
        time.sleep(SECOND_SIGNAL_AFTER_S)
        proc.send_signal(signal.SIGINT)
        try:
            stdout, _ = proc.communicate(timeout=SECOND_SIGNAL_AFTER_S)
            break
        except subprocess.TimeoutExpired:
            if time.time() > deadline:
                proc.kill()
                proc.communicate()
                pytest.fail("the run went on after a second SIGINT")
    assert proc.returncode == -signal.SIGINT  # ended by the signal itself, not by an exit after a checkpoint
    assert "checkpoint saved" not in stdout
    assert checkpoint_step(run_dir) == PAUSED_CHECKPOINT_STEP  # the periodic one, not one of the paused step
    assert not glob.glob(os.path.join(run_dir, "*.tmp"))
    resumed = run_cli(tmp_path, "--resume", run_dir, *ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {PAUSED_CHECKPOINT_STEP}/500" in resumed.stdout


def test_a_run_killed_after_its_checkpoint_resumes_with_every_step_logged_once(tmp_path):
    whole = run_cli(tmp_path, *PAUSED_RUN, "--exp-name", "whole")  # without PAUSE_FILE: never paused
    assert whole.returncode == 0, whole.stderr
    (whole_dir,) = glob.glob(str(tmp_path / "runs" / "*whole*"))

    proc, run_dir = start_paused(tmp_path, "killed")
    try:  # wait until every tag has values past the checkpoint on disk: steps the resumed run logs again
        deadline = time.time() + 60
        while min((events[-1][0] for events in all_scalars(run_dir).values()), default=0) <= PAUSED_CHECKPOINT_STEP:
            assert time.time() < deadline, all_scalars(run_dir)
            time.sleep(POLL_S)
    finally:
        proc.kill()  # SIGKILL: no checkpoint, no flush; what a crash or the out-of-memory killer does
    proc.communicate()
    assert checkpoint_step(run_dir) == PAUSED_CHECKPOINT_STEP and PAUSED_CHECKPOINT_STEP + 100 < PAUSE_AT
    resumed = run_cli(tmp_path, "--resume", run_dir, *ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr

    whole_logs, killed_logs = all_scalars(whole_dir), all_scalars(run_dir)
    assert killed_logs.keys() == whole_logs.keys()
    for tag, events in killed_logs.items():
        assert [s for s, _ in events] == [s for s, _ in whole_logs[tag]], tag  # each step once, none missing
        if tag != "charts/SPS":  # a speed, different in every process
            assert events == whole_logs[tag], tag


def test_checkpoint_frequency_zero_writes_a_checkpoint_only_when_interrupted(in_tmp, monkeypatch):
    args = ddpg.Args(env_id="tests.envs:Counter-v0", total_timesteps=8 * HORIZON, learning_starts=2 * HORIZON,
                     batch_size=HORIZON, hidden_size=8, eval_frequency=4 * HORIZON, eval_episodes=1,
                     checkpoint_frequency=0, save_model=False, cuda=False)  # fmt: skip
    left_alone = ddpg.train(args)
    assert left_alone["status"] == 0
    assert not os.path.exists(os.path.join(left_alone["run_dir"], ddpg.CHECKPOINT_FILE))

    ctrl_c_at_each_evaluation(monkeypatch)
    interrupted = ddpg.train(args)
    assert interrupted["status"] == 128 + signal.SIGINT
    assert checkpoint_step(interrupted["run_dir"]) == 4 * HORIZON  # the first evaluation's step


DATA = os.path.join(os.path.dirname(__file__), "data")
# Written by ddpg.py at commit 1e4dd69, the last before checkpoints numbered their layout (CHECKPOINT_FORMAT 1 without
# the number): Pendulum-v1 on the CPU, 32-unit networks, a 1000-transition buffer, evaluations and the checkpoint every
# 500 steps, learning from step 300, batches of 64, --total-timesteps 500.
RELEASED_LAYOUT = os.path.join(DATA, "checkpoint-1e4dd69.pt")
# Written by ddpg.py at commit 6c40bf7 (one tensor per buffer field, one evaluation env): an earlier layout.
OLDER_LAYOUT = os.path.join(DATA, "checkpoint-6c40bf7.pt")


def test_a_checkpoint_of_the_released_layout_resumes_exactly(in_tmp):
    run_dir = in_tmp / "runs" / "released"
    run_dir.mkdir(parents=True)
    shutil.copy(RELEASED_LAYOUT, run_dir / ddpg.CHECKPOINT_FILE)
    saved = ddpg.saved_args(torch.load(RELEASED_LAYOUT, weights_only=True)["args"])
    resumed = ddpg.train(ddpg.Args(resume=(str(run_dir),), total_timesteps=700))  # extended from step 500
    whole = ddpg.train(dataclasses.replace(saved, exp_name="whole", total_timesteps=700))  # today's, uninterrupted
    assert resumed["status"] == whole["status"] == 0
    for net in ("actor", "critic", "target_actor", "target_critic"):
        for a, b in zip(getattr(whole["agent"], net).parameters(), getattr(resumed["agent"], net).parameters()):
            assert torch.equal(a, b), net
    assert torch.equal(rows(whole["replay_buffer"]), rows(resumed["replay_buffer"]))
    np.testing.assert_array_equal(resumed["eval_returns"], whole["eval_returns"])
    written = torch.load(run_dir / ddpg.CHECKPOINT_FILE, weights_only=True)
    assert written["format"] == ddpg.CHECKPOINT_FORMAT and written["global_step"] == 700  # now with its number


def test_a_checkpoint_of_an_older_layout_is_refused_in_one_line(tmp_path):
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    shutil.copy(OLDER_LAYOUT, run_dir / ddpg.CHECKPOINT_FILE)
    for command in (["--resume", str(run_dir)], ["--eval-checkpoint", str(run_dir)]):
        result = run_main(tmp_path, *command)
        assert_refused_in_one_line(result, "written in checkpoint format 0 by an earlier ddpg.py, which this one (1) "
                                   "does not read", tmp_path)  # fmt: skip


def nan_first(method, parameter, when):
    """A method of Run that, when `when(run, *its arguments)` holds, first puts a NaN into `parameter(run)`, as if
    an update had left it there."""

    def with_a_nan(run, *args, **options):
        if when(run, *args):
            with torch.no_grad():
                parameter(run).view(-1)[0] = float("nan")
        return method(run, *args, **options)

    return with_a_nan


def stopped(args, capsys):
    """The result of a run of `args` that stops with exit status 1, and the one line it writes on stderr."""
    out = ddpg.train(args)
    assert out["status"] == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    return out, line


def test_a_nan_parameter_stops_the_run_at_the_checkpoint_naming_it(in_tmp, monkeypatch, capsys):
    critic_weight, at_step_400 = lambda run: run.agent.critic.net[2].weight, lambda run: run.global_step == 400
    monkeypatch.setattr(ddpg.Run, "check_finite", nan_first(ddpg.Run.check_finite, critic_weight, at_step_400))
    out, line = stopped(ddpg.Args(cuda=False, total_timesteps=600, learning_starts=100, batch_size=64, hidden_size=16,
                                  checkpoint_frequency=200, eval_frequency=600, eval_episodes=1), capsys)  # fmt: skip
    assert line.startswith("ddpg.py: error: step 400: parameter critic.net.2.weight is not finite; training stopped")
    checkpoint = torch.load(os.path.join(out["run_dir"], ddpg.CHECKPOINT_FILE), weights_only=True)
    assert checkpoint["global_step"] == 200  # the good one, not overwritten
    assert all(torch.isfinite(p).all() for p in checkpoint["agent"]["critic"].values())


def test_an_actor_an_update_broke_at_the_last_step_is_neither_evaluated_nor_saved(in_tmp, monkeypatch, capsys):
    actor_bias, at_the_last_step = lambda run: run.agent.actor.net[0].bias, lambda run, step, *_: step == 400
    monkeypatch.setattr(ddpg.Run, "record", nan_first(ddpg.Run.record, actor_bias, at_the_last_step))
    out, line = stopped(ddpg.Args(cuda=False, total_timesteps=400, learning_starts=100, batch_size=64, hidden_size=16,
                                  checkpoint_frequency=0, eval_frequency=200, eval_episodes=1), capsys)  # fmt: skip
    assert line == (
        "ddpg.py: error: step 400: parameter actor.net.0.bias is not finite; training stopped (no checkpoint)"
    )
    assert not os.path.exists(os.path.join(out["run_dir"], ddpg.MODEL_FILE))


def test_a_saved_model_in_a_checkpoints_place_is_refused_in_one_line(tmp_path, whole_run):
    os.makedirs(tmp_path / "copy")
    shutil.copy(os.path.join(whole_run, ddpg.MODEL_FILE), tmp_path / "copy" / ddpg.CHECKPOINT_FILE)
    result = run_main(tmp_path, "--resume", str(tmp_path / "copy"))
    assert_refused_in_one_line(result, "a saved model, not a checkpoint: it has nothing to resume from", tmp_path)


def test_a_signal_between_the_renames_of_checkpoints_is_acted_on_after_the_last(tmp_path, monkeypatch):
    renamed, seen = [], []
    real_replace = os.replace

    def replace_signalled_once(src, dst):
        if not renamed:  # SIGTERM between the first rename and the second
            os.kill(os.getpid(), signal.SIGTERM)
        real_replace(src, dst)
        renamed.append(os.path.basename(dst))

    def run(name):
        path = tmp_path / name
        return SimpleNamespace(args=ddpg.Args(), dir=SimpleNamespace(checkpoint=str(path), path=str(tmp_path)),
                               signals=SimpleNamespace(deferred=ddpg.SignalFlag.deferred),
                               write_checkpoint=lambda to, **extra: torch.save({"name": name}, to))  # fmt: skip

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(list(renamed)))
    try:
        monkeypatch.setattr(os, "replace", replace_signalled_once)
        population.save_checkpoints([run("a"), run("b")])
        monkeypatch.setattr(os, "replace", real_replace)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [["a", "b"]]  # handled once, after both were in place
