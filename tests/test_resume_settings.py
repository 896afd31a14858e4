"""--resume with options: a larger --total-timesteps extends a run (exactly as a run that long from the start), options
of the machine and the records may change, any other is refused in one line; and a run that fails after its directory
exists says how to resume it."""

import dataclasses
import glob
import os

import pytest
import torch
import tyro

import ddpg
from tests.envs import BREAK_FILE
from tests.test_checkpoints import all_scalars, saved_weights
from tests.test_cli import run_main
from tests.test_faults import TIMING_TAG

TINY = ["--learning-starts", "100", "--batch-size", "32", "--hidden-size", "16", "--eval-frequency", "200",
        "--eval-episodes", "1", "--no-cuda", "--threads", "1"]  # fmt: skip
SAVED = dict(cuda=False, total_timesteps=400, learning_starts=100, batch_size=32, hidden_size=16, eval_frequency=200,
             eval_episodes=1, checkpoint_frequency=200, save_model=False, threads=1, learning_rate=5e-4)  # fmt: skip
# a value of each option of the machine and the records other than the saved run's (SAVED): cuda and save_model are
# Args()'s defaults, typed
ALLOWED = {"threads": ["--threads", "2"], "cuda": ["--cuda"], "cudagraphs": ["--no-cudagraphs"],
           "compile": ["--compile"], "torch_deterministic": ["--no-torch-deterministic"], "track": ["--track"],
           "wandb_project_name": ["--wandb-project-name", "other"], "wandb_entity": ["--wandb-entity", "someone"],
           "capture_video": ["--capture-video"], "save_model": ["--save-model"],
           "checkpoint_frequency": ["--checkpoint-frequency", "100"]}  # fmt: skip
SETTINGS = [field.name for field in dataclasses.fields(ddpg.Args)
            if field.name not in ddpg.MACHINE_OPTIONS + ddpg.COMMAND_OPTIONS]  # fmt: skip


def logged(run_dir):
    return {tag: events for tag, events in all_scalars(run_dir).items() if tag != TIMING_TAG}


def the_run(cwd, exp_name):
    (run_dir,) = glob.glob(str(cwd / "runs" / f"*__{exp_name}__*"))
    return os.path.relpath(run_dir, cwd)


def test_a_run_extended_ends_as_a_run_that_long_from_the_start(tmp_path):
    whole = run_main(tmp_path, *TINY, "--total-timesteps", "600", "--exp-name", "whole")
    assert whole.returncode == 0, whole.stderr
    part = run_main(tmp_path, *TINY, "--total-timesteps", "400", "--exp-name", "part")  # 200 divides 400
    assert part.returncode == 0, part.stderr
    run_dir = the_run(tmp_path, "part")
    extended = run_main(tmp_path, "--resume", run_dir, "--total-timesteps", "600")  # a finished run, holding model.pt
    assert extended.returncode == 0, extended.stderr
    assert f"resuming {run_dir} at step 400/600" in extended.stdout
    whole_dir, run_dir = str(tmp_path / the_run(tmp_path, "whole")), str(tmp_path / run_dir)
    weights, extended_weights = saved_weights(whole_dir), saved_weights(run_dir)  # model.pt written again at the end
    for net in ("actor", "critic"):
        assert all(torch.equal(tensor, extended_weights[net][name]) for name, tensor in weights[net].items()), net
    assert logged(run_dir) == logged(whole_dir)  # every value at the same steps, in the same TensorBoard run
    checkpoint = torch.load(os.path.join(run_dir, ddpg.CHECKPOINT_FILE), weights_only=True)
    assert checkpoint["global_step"] == 600 and checkpoint["args"]["total_timesteps"] == 600
    again = run_main(tmp_path, "--resume", the_run(tmp_path, "part"))
    assert again.returncode == 0 and "has finished" in again.stdout  # at its new end


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """A run stopped at step 400 of 800 (its checkpoint's --total-timesteps raised, as if it had been interrupted)."""
    cwd = tmp_path_factory.mktemp("resumable")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        run_dir = ddpg.train(ddpg.Args(**SAVED))["run_dir"]
    path = os.path.join(cwd, run_dir, ddpg.CHECKPOINT_FILE)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["args"]["total_timesteps"] = 800
    torch.save(checkpoint, path)
    return str(cwd / run_dir)


def resumed_with(run_dir, *argv):
    """The arguments `python ddpg.py --resume RUN_DIR ARGV` goes on with, or the UsageError it refuses them with."""
    command = ["--resume", run_dir, *argv]
    typed = ddpg.TYPED.set(ddpg.typed_options(command))  # as `main` does
    try:
        args, _ = ddpg.resume_point(tyro.cli(ddpg.Args, args=command), run_dir)
        return args
    finally:
        ddpg.TYPED.reset(typed)


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_an_option_of_the_machine_or_the_records_may_change_with_resume(resumable, name):
    assert set(ALLOWED) == set(ddpg.MACHINE_OPTIONS)  # every such option is tried here
    wanted = getattr(tyro.cli(ddpg.Args, args=ALLOWED[name]), name)
    saved = torch.load(os.path.join(resumable, ddpg.CHECKPOINT_FILE), weights_only=True)["args"]
    assert wanted != saved[name]
    args = resumed_with(resumable, *ALLOWED[name])
    assert getattr(args, name) == wanted
    apart = (name, "resume", "threads")  # --threads is always the resuming process's (None: from its cores)
    assert {k: v for k, v in dataclasses.asdict(args).items() if k not in apart} == \
        {k: v for k, v in saved.items() if k not in apart}  # fmt: skip


def other_value(name, value):
    """A value of option `name` other than `value` (for --total-timesteps, a smaller one: a larger one extends)."""
    if name == "noise_type":
        return "gaussian" if value == "ou" else "ou"
    if isinstance(value, str):
        return f"{value}x"
    if isinstance(value, int):
        return value - 1 if name == ddpg.EXTENDING_OPTION else value + 1
    return value / 2


@pytest.mark.parametrize("name", SETTINGS)
def test_an_option_that_changes_the_experiment_is_refused_with_resume(resumable, name):
    saved = torch.load(os.path.join(resumable, ddpg.CHECKPOINT_FILE), weights_only=True)["args"][name]
    value, option = other_value(name, saved), f"--{name.replace('_', '-')}"
    with pytest.raises(ddpg.UsageError, match=f"^--resume {resumable}: {option} {value}"):
        resumed_with(resumable, option, str(value))


def test_a_typed_default_is_refused_and_a_call_of_train_asks_only_what_differs_from_the_defaults(resumable):
    with pytest.raises(ddpg.UsageError, match="--learning-rate 0.001: the run was trained with 0.0005"):
        resumed_with(resumable, "--learning-rate", "0.001")  # Args()'s default, typed
    args, _ = ddpg.resume_point(ddpg.Args(resume=(resumable,)), resumable)  # asks nothing
    assert args.learning_rate == 5e-4 and args.total_timesteps == 800
    with pytest.raises(ddpg.UsageError, match="--noise-type gaussian: the run was trained with ou"):
        ddpg.resume_point(ddpg.Args(resume=(resumable,), noise_type="gaussian"), resumable)
    assert resumed_with(resumable, "--total-timesteps", "1000").total_timesteps == 1000  # extends


def test_a_refused_resume_is_one_line_and_writes_nothing(resumable, tmp_path):
    before = {name: os.stat(os.path.join(resumable, name)).st_mtime_ns for name in os.listdir(resumable)}
    result = run_main(tmp_path, "--resume", resumable, "--noise-type", "gaussian")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"ddpg.py: error: --resume {resumable}: --noise-type gaussian: the run was "
                                          "trained with ou, and a resumed run keeps its settings (only options of the "
                                          "machine and the records may change, and --total-timesteps grow); start a "
                                          "new run to change it"]  # fmt: skip
    assert {name: os.stat(os.path.join(resumable, name)).st_mtime_ns for name in os.listdir(resumable)} == before


# ----------------------------------------------------------------------------------------------------------------
# Failures after the run directory exists

OUT_OF_MEMORY = "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139.81 GiB"


def out_of_memory(*args, **kwargs):
    raise torch.OutOfMemoryError(OUT_OF_MEMORY)


def fails_to_replay(*args):
    raise RuntimeError("the simulator would not replay")


def first_run(tmp_path, exp_name, *argv):
    return run_main(tmp_path, *TINY, "--total-timesteps", "400", "--checkpoint-frequency", "200", "--exp-name",
                    exp_name, *argv)  # fmt: skip


def resume_line(run_dir):
    path = os.path.join(run_dir, ddpg.CHECKPOINT_FILE)
    return f"the last good checkpoint is {path}; resume with: python {ddpg.__file__} --resume {run_dir}"


def test_the_device_out_of_memory_mid_run_stops_it_in_one_line_and_it_resumes(tmp_path, monkeypatch):
    real = ddpg.Logs.evaluation
    monkeypatch.setattr(ddpg.Logs, "evaluation", lambda logs, evaluation, step, envs: (
        out_of_memory if step == 400 else real)(logs, evaluation, step, envs))  # fmt: skip
    result = first_run(tmp_path, "oom")
    run_dir = the_run(tmp_path, "oom")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"ddpg.py: error: step 400: cpu out of memory (CUDA out of memory. Tried to allocate 20.00 GiB); training "
        f"stopped ({resume_line(run_dir)})"]  # fmt: skip
    monkeypatch.setattr(ddpg.Logs, "evaluation", real)
    resumed = run_main(tmp_path, "--resume", run_dir)
    assert resumed.returncode == 0 and f"resuming {run_dir} at step 200/400" in resumed.stdout, resumed.stderr


def test_the_device_out_of_memory_before_the_run_opens_is_one_line_and_leaves_no_directory(tmp_path, monkeypatch):
    real = ddpg.ReplayBuffer.__init__
    # (check_memory measures a buffer of one row, on the meta device)
    monkeypatch.setattr(ddpg.ReplayBuffer, "__init__", lambda rb, size, *args: (out_of_memory if size > 1 else real)(
        rb, size, *args))  # fmt: skip
    result = first_run(tmp_path, "early")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["ddpg.py: error: out of memory (CUDA out of memory. Tried to allocate 20.00 "
                                          "GiB)"]  # fmt: skip
    assert not glob.glob(str(tmp_path / "runs" / "*"))  # the run's parts are made before its directory


def test_an_environment_that_raises_keeps_its_traceback_then_says_how_to_resume(tmp_path, monkeypatch):
    monkeypatch.setenv(BREAK_FILE, str(tmp_path / "broke"))
    with pytest.raises(RuntimeError, match="the simulator broke") as raised:  # main raises it on: its traceback
        first_run(tmp_path, "broke", "--env-id", "tests.envs:Break-v0")
    run_dir = the_run(tmp_path, "broke")
    assert raised.value.__notes__ == [f"ddpg.py: error: step 249: training stopped ({resume_line(run_dir)})"]
    os.close(ddpg.lock_run_dir(str(tmp_path / run_dir)))  # released
    # and when it fails again as it replays its episode on resume, before the loop: the same
    monkeypatch.setattr(ddpg, "load_envs_state", fails_to_replay)
    with pytest.raises(RuntimeError, match="would not replay") as raised:
        run_main(tmp_path, "--resume", run_dir)
    assert raised.value.__notes__ == [f"ddpg.py: error: step 200: training stopped ({resume_line(run_dir)})"]
    monkeypatch.undo()
    resumed = run_main(tmp_path, "--resume", run_dir)
    assert resumed.returncode == 0 and f"resuming {run_dir} at step 200/400" in resumed.stdout, resumed.stderr


def test_an_extension_that_stopped_midway_resumes_without_options_and_is_not_finished_for_a_sweep(tmp_path):
    import sweep

    result = first_run(tmp_path, "stopped")
    run_dir = str(tmp_path / the_run(tmp_path, "stopped"))
    path = os.path.join(run_dir, ddpg.CHECKPOINT_FILE)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["args"]["total_timesteps"] = 600  # as an extension to 600 leaves it when stopped at step 400
    torch.save(checkpoint, path)
    assert result.returncode == 0 and os.path.exists(os.path.join(run_dir, ddpg.MODEL_FILE))  # model.pt of step 400
    args, _ = ddpg.resume_point(ddpg.Args(resume=(run_dir,)), run_dir)
    assert args.total_timesteps == 600  # goes on, though it holds model.pt
    assert sweep.run_state(run_dir)[1] == 400
    settings = lambda seed: ddpg.Args(total_timesteps=600)  # noqa: E731 (the sweep's runs, as far as it matters)
    assert not sweep.finished([run_dir], settings, 1)
