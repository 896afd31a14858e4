"""ddpg.py as a user runs it: a subprocess, its console, its TensorBoard run and its saved model."""

import ast
import contextlib
import dataclasses
import inspect
import io
import os
import re
import subprocess
import sys
import textwrap
import unittest.mock

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ddpg
from tests.conftest import ROOT, subprocess_env

SCRIPT = os.path.join(ROOT, "ddpg.py")
POPULATION = os.path.join(ROOT, "population.py")  # many seeds in one process, with ddpg.py's options
PENDULUM_MAX_STEP_COST = 16.2736044  # pi^2 + 0.1 * 8^2 + 0.001 * 2^2: a Pendulum return lies in [-200 * this, 0]
SHORT_RUN = ["--total-timesteps", "600", "--learning-starts", "300", "--batch-size", "64", "--hidden-size", "32",
             "--eval-frequency", "300", "--eval-episodes", "2", "--no-cuda"]  # fmt: skip


def run_cli(cwd, *cli_args, env=None, script=SCRIPT):
    return subprocess.run([sys.executable, script, *cli_args], cwd=cwd, env=env or subprocess_env(),
                          capture_output=True, text=True)  # fmt: skip


def run_main(cwd, *cli_args, main=ddpg.main, script=SCRIPT):
    """`python ddpg.py CLI_ARGS` in this process (`ddpg.main`, as the script runs it; or another script's `main`),
    without a new interpreter's start-up: its exit status and console, as a finished subprocess."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            unittest.mock.patch.object(sys, "argv", [script, *cli_args]):  # fmt: skip
        try:
            status = main()
        except SystemExit as e:  # tyro's own refusals exit
            status = e.code
    return subprocess.CompletedProcess([script, *cli_args], status, stdout.getvalue(), stderr.getvalue())


def scalars(run_dir):
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events, {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def test_short_pendulum_run_logs_what_it_did(tmp_path):
    # as on a headless machine where nothing about SDL is set: ddpg.py itself must keep SDL's and pygame's noise away
    env = {k: v for k, v in subprocess_env().items() if k not in ("SDL_VIDEODRIVER", "XDG_RUNTIME_DIR")}
    result = run_cli(tmp_path, *SHORT_RUN, "--capture-video", "--exp-name", "cli", env=env)  # model.pt by default
    assert result.returncode == 0, result.stderr
    assert "error" not in (result.stdout + result.stderr).lower() and "pygame" not in result.stdout
    (run_name,) = os.listdir(tmp_path / "runs")
    assert run_name.startswith("Pendulum-v1__cli__1__")
    run_dir = str(tmp_path / "runs" / run_name)
    events, logged = scalars(run_dir)

    # three 200-step episodes, each cut by the time limit (the run crosses it twice and keeps going)
    returns = logged["charts/episodic_return"]
    assert [e.step for e in returns] == [200, 400, 600]
    assert all(-200 * PENDULUM_MAX_STEP_COST <= e.value < 0 for e in returns)
    assert [e.value for e in logged["charts/episodic_length"]] == [200, 200, 200]
    # evaluations at the eval frequency; the final one is the one printed
    evals = logged["eval/episodic_return"]
    assert [e.step for e in evals] == [300, 600]
    assert f"final evaluation: {evals[-1].value:.1f}" in result.stdout
    for tag in ("eval/q_estimate", "eval/discounted_return"):  # beside it, at the same steps
        assert [e.step for e in logged[tag]] == [300, 600], tag
    # updates once the buffer holds 300 transitions (the first at step 301), losses every 100 steps
    for tag in ("losses/qf1_loss", "losses/qf1_values", "losses/actor_loss", "charts/SPS"):  # CleanRL's tags
        assert [e.step for e in logged[tag]] == [400, 500, 600], tag
    assert all(e.value >= 0 for e in logged["losses/qf1_loss"])
    assert all(e.value > 0 for e in logged["charts/SPS"])
    # the console shows progress
    assert "step 600/600" in result.stdout and "SPS" in result.stdout and "left" in result.stdout
    # hyperparameters as a text table
    (hparams,) = events.Tensors("hyperparameters/text_summary")
    table = hparams.tensor_proto.string_val[0].decode()
    assert "|batch_size|64|" in table and "|env_id|Pendulum-v1|" in table

    # the saved model loads with weights_only=True into the networks, with the run's Args
    saved = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    args = ddpg.Args(**saved["args"])
    assert args.total_timesteps == 600 and args.hidden_size == 32
    obs_dim, action_space = ddpg.check_env(args.env_id)
    actor = ddpg.Actor(obs_dim, action_space, args.hidden_size)
    actor.load_state_dict(saved["agent"]["actor"])
    critic = ddpg.Critic(obs_dim, action_space.shape[0], args.hidden_size)
    critic.load_state_dict(saved["agent"]["critic"])
    assert not any(name.endswith(".tmp") for name in os.listdir(run_dir))
    # --capture-video: the first episode of each of the two evaluations (2 episodes each)
    assert sorted(os.listdir(os.path.join(run_dir, "videos"))) == ["eval-episode-0.mp4", "eval-episode-1.mp4"]

    # the run directory itself can be evaluated: its model.pt is the one loaded
    evaluated = run_cli(tmp_path, "--eval-checkpoint", run_dir, "--eval-episodes", "2", "--no-cuda")
    assert evaluated.returncode == 0, evaluated.stderr
    envs = ddpg.make_eval_envs("Pendulum-v1", num_episodes=2, seed=1)
    evaluation = ddpg.evaluate(actor, critic, envs, args.gamma, torch.device("cpu"))
    returns = evaluation.returns
    assert f"Pendulum-v1: {returns.mean():.1f} +- {returns.std():.1f} over 2 episodes" in evaluated.stdout
    # and beside it, the critic's estimate of those episodes and their discounted return
    assert (f"critic's estimate Q(s_1, mu(s_1)) {evaluation.q_estimates.mean():.1f}, discounted return "
            f"{evaluation.discounted_returns.mean():.1f} (gamma 0.99)") in evaluated.stdout  # fmt: skip


def field_docstrings(cls) -> dict:
    """Each field of a dataclass and the docstring under it, read from the class's source (as tyro reads it)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    return {field.target.id: (doc.value.value if isinstance(doc, ast.Expr) else None)
            for field, doc in zip(body, body[1:] + [None]) if isinstance(field, ast.AnnAssign)}  # fmt: skip


def test_help_shows_every_option_with_its_docstring(tmp_path):
    result = run_cli(tmp_path, "--help")
    assert result.returncode == 0
    shown = re.sub(r"[\s│]+", " ", result.stdout)  # wrapped lines joined, the box's borders dropped
    docstrings = field_docstrings(ddpg.Args)
    assert list(docstrings) == [field.name for field in dataclasses.fields(ddpg.Args)]
    for field in dataclasses.fields(ddpg.Args):
        flag = f"--{field.name.replace('_', '-')}"
        flags = f"{flag}, --no-{flag[2:]}" if field.type in (bool, "bool") else f"{flag} "  # booleans: both spellings
        assert docstrings[field.name], f"{field.name} has no docstring"
        assert f" {flags}" in shown, flag
        assert " ".join(docstrings[field.name].split()) in shown, flag


RETIRED_ID = (["--env-id", "HalfCheetah-v3"], "--env-id HalfCheetah-v3: The mujoco v2 and v3 based environments")
BAD_INPUTS = [
    (["--env-id", "NoSuchEnv-v0"], "--env-id NoSuchEnv-v0"),
    (["--env-id", "no_such_module:Env-v0"], "--env-id no_such_module:Env-v0"),
    (["--env-id", "CartPole-v1"], "action space must be a continuous"),
    (["--env-id", "tests.envs:ImageObs-v0"], "observation space must be a flat Box"),
    (["--env-id", "tests.envs:UnboundedAction-v0"], "action bounds must be finite"),
    (["--total-timesteps", "0"], "--total-timesteps must be positive"),
    (["--buffer-size", "-5"], "--buffer-size must be positive"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--num-envs", "0"], "--num-envs must be positive"),
    (["--learning-rate", "0"], "--learning-rate must be positive"),
    (["--hidden-size", "0"], "--hidden-size must be positive"),
    (["--policy-frequency", "0"], "--policy-frequency must be positive"),
    (["--eval-frequency", "0"], "--eval-frequency must be positive"),
    (["--eval-episodes", "0"], "--eval-episodes must be positive"),
    (["--tau", "0"], "--tau must be in (0, 1]"),
    (["--tau", "1.5"], "--tau must be in (0, 1]"),
    (["--gamma", "1.01"], "--gamma must be in [0, 1]"),
    (["--gamma", "nan"], "--gamma must be in [0, 1]"),
    (["--exploration-noise", "-0.1"], "--exploration-noise must be non-negative"),
    (["--batch-size", "512", "--buffer-size", "300"], "--batch-size (512) must not exceed --buffer-size (300)"),
    (["--batch-size", "512", "--learning-starts", "100"], "must not exceed --learning-starts (100)"),
    (["--learning-starts", "20000"], "--learning-starts (20000) must be below --total-timesteps"),
    (["--threads", "0"], "--threads must be positive"),
    (["--threads", "-2"], "--threads must be positive"),
    (["--seed", "-1"], "--seed must be in [0, 2^32), got -1"),
    (["--learning-rate", "inf"], "--learning-rate must be positive and finite, got inf"),
    (["--exploration-noise", "inf"], "--exploration-noise must be non-negative and finite, got inf"),
    (["--buffer-size", "100000000000"], "--buffer-size 100000000000: needs 3352.8 GiB, more than "),
    (["--hidden-size", "10000000"], "--hidden-size 10000000: needs 3725292.7 GiB, more than "),
    RETIRED_ID,
    (["--seed", str(2**32)], f"--seed must be in [0, 2^32), got {2**32}"),
    (["--exp-name", ""], "--exp-name must not be empty"),
    (["--exp-name", "a/b"], "--exp-name a/b: no '/' or '__'"),
    (["--exp-name", "a__b"], "--exp-name a__b: no '/' or '__'"),
    (["--eval-checkpoint", "no/such/run"], "--eval-checkpoint no/such/run: no such file or directory"),
    # CleanRL's options for the Hugging Face Hub, in the spellings tyro takes: refused with the reason
    (["--upload-model"], "--upload-model: CleanRL's upload to the Hugging Face Hub is not part of ddpg.py"),
    (["--no-upload-model"], "--no-upload-model: CleanRL's upload to the Hugging Face Hub is not part of ddpg.py"),
    (["--seed", "2", "--hf-entity", "me"], "--hf-entity: CleanRL's upload to the Hugging Face Hub is not part of"),
    (["--hf_entity=me"], "--hf_entity: CleanRL's upload to the Hugging Face Hub is not part of ddpg.py"),
]


def assert_refused_in_one_line(result, message, cwd):
    assert result.returncode == 2, result.stderr  # the status of a usage error, as argparse and tyro use
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (cwd / "runs").exists()


@pytest.mark.parametrize("cli_args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_without_traceback_or_run_dir(tmp_path, cli_args, message):
    assert_refused_in_one_line(run_main(tmp_path, *cli_args), message, tmp_path)


@pytest.mark.parametrize("index", [0, BAD_INPUTS.index(RETIRED_ID)], ids=["unknown id", "retired id"])
def test_bad_input_ends_the_script_with_status_2(tmp_path, index):  # the process itself, as a shell sees it
    cli_args, message = BAD_INPUTS[index]  # a retired id: gymnasium's warning about it not shown on top
    assert_refused_in_one_line(run_cli(tmp_path, *cli_args), message, tmp_path)


def test_compile_without_a_cpp_compiler_is_refused_before_any_work(tmp_path):
    env = subprocess_env(PATH=str(tmp_path))  # a PATH on which there is no compiler
    assert_refused_in_one_line(run_cli(tmp_path, "--compile", "--no-cuda", env=env), "--compile needs a C++ compiler",
                               tmp_path)  # fmt: skip


def test_missing_moviepy_is_one_line_naming_it(tmp_path):
    fake = tmp_path / "fake"  # a moviepy that cannot be found: a None entry in sys.modules hides the package
    fake.mkdir()
    (fake / "sitecustomize.py").write_text("import sys\nsys.modules['moviepy'] = None\n")
    env = subprocess_env(str(fake))
    for cli_args in (["--capture-video"], ["--eval-checkpoint", str(tmp_path), "--capture-video"]):
        result = run_cli(tmp_path, *cli_args, "--no-cuda", env=env)
        assert_refused_in_one_line(result, "--capture-video needs moviepy", tmp_path)


def test_eval_checkpoint_of_a_directory_without_a_saved_agent_is_refused(tmp_path):
    result = run_cli(tmp_path, "--eval-checkpoint", str(tmp_path))
    assert_refused_in_one_line(result, f"no {ddpg.MODEL_FILE} or {ddpg.CHECKPOINT_FILE} in that directory", tmp_path)
