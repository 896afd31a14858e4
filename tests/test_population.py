"""population.py: several independent agents trained in one process, in step; batched on a GPU, seed by seed on CPU."""

import copy
import dataclasses
import errno
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import tyro

import ddpg
import population
from tests.conftest import subprocess_env
from tests.test_checkpoints import all_scalars
from tests.test_cli import POPULATION, assert_refused_in_one_line, run_cli, run_main, scalars
from tests.test_fast_paths import needs_cuda
from tests.test_units import ASYMMETRIC_BOX, Minibatch, random_batch, rows

SHORT = ["--total-timesteps", "1500", "--learning-starts", "300", "--batch-size", "64", "--hidden-size", "32",
         "--eval-frequency", "500", "--eval-episodes", "2", "--checkpoint-frequency", "500", "--no-cuda"]  # fmt: skip
TIMING_TAG = "charts/SPS"  # the one logged value that depends on the machine's speed
LEARNED = -400.0  # a Pendulum policy this good has learned to swing up (uniformly random actions: about -1200)
LEARNING_STEPS = 5000  # at the default settings, enough for both seeds of the population to pass LEARNED
SINGLE_RUN_TAGS = sorted(
    [
        "charts/SPS",
        "charts/episodic_length",
        "charts/episodic_return",
        "eval/episodic_return",
        ddpg.EVAL_Q_TAG,
        ddpg.EVAL_DISCOUNTED_TAG,
        "losses/actor_loss",
        "losses/qf1_loss",
        "losses/qf1_values",
    ]
)  # what a --seed run logs
POLL_S = 0.05


def short_args(**overrides):
    settings = dict(cuda=False, total_timesteps=1500, learning_starts=300, batch_size=64, hidden_size=32,
                    eval_frequency=500, eval_episodes=2, checkpoint_frequency=500)  # fmt: skip
    return ddpg.Args(**{**settings, **overrides})


def weights(agent):
    return [p.detach().clone() for net in population.NETWORKS for p in getattr(agent, net).parameters()]


def files(run_dir):
    """The kinds of file in a run directory (TensorBoard's event file by its kind, not its name)."""
    return {"events" if name.startswith("events.out.tfevents") else name for name in os.listdir(run_dir)}


def files_of(run_dir):
    return sorted(os.listdir(run_dir))


def logged(run_dir):
    return {tag: events for tag, events in all_scalars(run_dir).items() if tag != TIMING_TAG}


@pytest.fixture
def batched(monkeypatch):
    """The population's GPU path (one batched call for all agents) on the CPU, where it is otherwise not taken."""
    monkeypatch.setattr(population, "batches_seeds", lambda device: True)


# ---------------------------------------------------------------------------------------------------------------
# The batched update is K separate updates


def test_one_batched_update_equals_separate_updates_of_each_agent():
    seeds, rounds, tau, gamma = (3, 5, 8), 6, 0.1, 0.9
    args = ddpg.Args(hidden_size=16, learning_rate=1e-2)
    agents = []
    for seed in seeds:
        torch.manual_seed(seed)
        agents.append(ddpg.make_agent(3, ASYMMETRIC_BOX, args, torch.device("cpu")))
    alone = copy.deepcopy(agents)  # the same agents, each updated by the lesson's `update`
    together = population.stack(agents)  # the population's own copies, stacked
    for i in range(rounds):
        batches = [random_batch(seed=100 * i + k) for k in range(len(seeds))]  # each agent's own minibatch
        stacked = ddpg.Batch(*(torch.stack(field) for field in zip(*batches)))
        losses = population.batched_update(together, Minibatch(stacked), 0, gamma, tau, update_actor=i % 2 == 1)
        for k, (agent, batch) in enumerate(zip(alone, batches)):
            own = ddpg.update(agent, Minibatch(batch), len(batch.obs), gamma, tau, update_actor=i % 2 == 1)
            for name in ("critic", "q_values", "actor"):
                if own._asdict()[name] is None:
                    assert losses._asdict()[name] is None
                else:
                    torch.testing.assert_close(losses._asdict()[name][k], own._asdict()[name])
    for k, (agent, own) in enumerate(zip(agents, alone)):
        population.copy_out(together, k, agent)  # what a member's run evaluates and checkpoints
        for a, b in zip(weights(agent), weights(own), strict=True):
            torch.testing.assert_close(a, b)
        assert not all(torch.equal(a, b) for a, b in zip(weights(agent), weights(alone[0])))  # agents stay apart
        for name in ("actor_optimizer", "critic_optimizer"):  # Adam's moments, as the agent's own Adam holds them
            mine, theirs = getattr(agent, name).state_dict()["state"], getattr(own, name).state_dict()["state"]
            assert mine.keys() == theirs.keys()
            for i in mine:
                for key in ("step", "exp_avg", "exp_avg_sq"):
                    torch.testing.assert_close(mine[i][key], theirs[i][key])


def test_a_batched_population_stores_each_seeds_transitions_apart(in_tmp, monkeypatch):
    args = short_args(total_timesteps=700, checkpoint_frequency=0)
    apart = population.train_population(dataclasses.replace(args, exp_name="apart"), seeds=(1, 2))  # agent by agent
    monkeypatch.setattr(population, "batches_seeds", lambda device: True)
    batched = population.train_population(dataclasses.replace(args, exp_name="batched"), seeds=(1, 2))
    for mine, theirs in zip(batched["replay_buffers"], apart["replay_buffers"]):
        assert int(mine.size) == 700  # each seed's buffer holds its own 700 transitions
        # the same random warm-up actions, from each seed's own action space: the same transitions, row for row
        assert torch.equal(rows(mine)[: args.learning_starts], rows(theirs)[: args.learning_starts])
        obs, next_obs = mine.obs[:700].numpy(), mine.next_obs[:700].numpy()
        same_episode = np.arange(1, 700) % 200 != 0  # then its own episodes go on: s_{t+1} is the next s_t
        np.testing.assert_array_equal(obs[1:][same_episode], next_obs[:-1][same_episode])
    first, second = batched["replay_buffers"]
    assert not torch.equal(rows(first)[:700], rows(second)[:700])


# ---------------------------------------------------------------------------------------------------------------
# Each seed learns from its own transitions only


@pytest.mark.parametrize("path", ["each-after-another", "batched"])
def test_each_seed_learns_only_from_its_own_transitions(in_tmp, monkeypatch, path):
    """The population's updates with every seed's replay buffer but one filled with NaN: that seed's networks and
    losses stay finite and are exactly those it reaches when every buffer holds good transitions."""
    if path == "batched":
        monkeypatch.setattr(population, "batches_seeds", lambda device: True)
    seeds, stored, args = (1, 2, 3), 200, short_args(buffer_size=1000)
    good = [random_batch(stored, obs_dim=3, act_dim=1, seed=seed) for seed in seeds]  # Pendulum's dimensions
    nan = ddpg.Batch(*(torch.full_like(column, np.nan) for column in good[0]))

    def updated(poisoned: set[int]) -> list[list[torch.Tensor]]:
        """Each seed's weights and losses after two updates of the population (the second with actor steps)."""
        pop = population.Population(*population.made([dataclasses.replace(args, seed=s) for s in seeds]), args)
        try:
            for k, run in enumerate(pop.runs):  # as a checkpoint's buffer is restored
                held = nan if k in poisoned else good[k]
                ddpg.load_buffer_state(run.rb, {"pos": stored, "size": stored, **held._asdict()})
            critic_only, both = [pop.steps.update(None, None, args.batch_size, 0.99, 0.005, a) for a in (False, True)]
            results = []
            for k, run in enumerate(pop.runs):
                pop.sync(k)  # batched: seed k's networks copied out of the stacked ones
                results.append(
                    [*weights(run.agent), critic_only.critic[k], critic_only.q_values[k], *(loss[k] for loss in both)]
                )
            return results
        finally:
            for run in pop.runs:
                run.abandon()

    clean = updated(poisoned=set())
    for k, seed in enumerate(seeds):
        among_nan = updated(poisoned=set(range(len(seeds))) - {k})[k]
        for mine, expected in zip(among_nan, clean[k], strict=True):
            assert torch.isfinite(mine).all(), f"seed {seed} learned from another seed's transitions"
            assert torch.equal(mine, expected), f"seed {seed} learned from another seed's transitions"


# ---------------------------------------------------------------------------------------------------------------
# Each seed is a run of its own


def test_a_two_seed_population_learns_and_writes_single_runs(tmp_path):
    result = run_cli(
        tmp_path,
        "--seeds",
        "1",
        "2",
        "--exp-name",
        "pair",
        "--total-timesteps",
        str(LEARNING_STEPS),
        "--eval-frequency",
        str(LEARNING_STEPS),
        "--no-cuda",
        script=POPULATION,
    )  # otherwise the default settings
    assert result.returncode == 0, result.stderr
    run_dirs = sorted(glob.glob(str(tmp_path / "runs" / "*")))
    assert [os.path.basename(d).split("__")[:3] for d in run_dirs] == [["Pendulum-v1", "pair", "1"],
                                                                     ["Pendulum-v1", "pair", "2"]]  # fmt: skip
    for seed, run_dir in zip((1, 2), run_dirs):
        assert files(run_dir) == {"checkpoint.pt", "events", "lock", "model.pt"}  # a single run's files
        events, logged_tags = scalars(run_dir)
        assert sorted(logged_tags) == SINGLE_RUN_TAGS
        (hparams,) = events.Tensors("hyperparameters/text_summary")
        assert f"|seed|{seed}|" in hparams.tensor_proto.string_val[0].decode()
        saved = torch.load(os.path.join(run_dir, ddpg.MODEL_FILE), weights_only=True)
        assert ddpg.Args(**saved["args"]).seed == seed
        final = logged_tags["eval/episodic_return"][-1]
        assert final.step == LEARNING_STEPS and final.value >= LEARNED, (seed, final.value)
        assert f"seed {seed} | final evaluation: {final.value:.1f}" in result.stdout
    evaluated = run_cli(tmp_path, "--eval-checkpoint", run_dirs[1], "--eval-episodes", "2", "--no-cuda")
    assert evaluated.returncode == 0 and "Pendulum-v1: " in evaluated.stdout, evaluated.stderr


def test_seeds_with_one_seed_is_exactly_that_seed(in_tmp):
    alone = ddpg.train(short_args(seed=3, exp_name="alone"))
    as_seeds = population.train_population(short_args(exp_name="seeds"), seeds=(3,))
    (agent,), (run_dir,) = as_seeds["agents"], as_seeds["run_dirs"]
    assert all(torch.equal(a, b) for a, b in zip(weights(alone["agent"]), weights(agent), strict=True))
    assert logged(alone["run_dir"]) == logged(run_dir)
    assert os.path.basename(run_dir).split("__")[:3] == ["Pendulum-v1", "seeds", "3"]


@pytest.mark.parametrize("path", ["each-after-another", "batched"])
def test_a_population_resumed_from_its_checkpoints_ends_as_one_left_alone(in_tmp, monkeypatch, path):
    if path == "batched":
        monkeypatch.setattr(population, "batches_seeds", lambda device: True)
    whole = population.train_population(short_args(exp_name="whole"), seeds=(1, 2))
    part = population.train_population(
        short_args(exp_name="part", total_timesteps=1000, save_model=False), seeds=(1, 2)
    )
    for run_dir in part["run_dirs"]:  # go on to where the whole population ended
        path_ = os.path.join(run_dir, ddpg.CHECKPOINT_FILE)
        checkpoint = torch.load(path_, weights_only=True)
        checkpoint["args"]["total_timesteps"] = 1500
        torch.save(checkpoint, path_)
    resumed = population.train_population(ddpg.Args(), resume=tuple(part["run_dirs"]))
    assert resumed["status"] == 0
    for k in range(2):
        assert all(torch.equal(a, b) for a, b in zip(weights(whole["agents"][k]), weights(resumed["agents"][k])))
        assert torch.equal(rows(whole["replay_buffers"][k]), rows(resumed["replay_buffers"][k]))
        np.testing.assert_array_equal(whole["eval_returns"][k], resumed["eval_returns"][k])


@pytest.fixture(scope="module")
def whole_population(tmp_path_factory):
    """The directory whose runs/ holds the population of SHORT, seeds 1 and 2, left alone."""
    whole = tmp_path_factory.mktemp("whole")
    result = run_cli(whole, *SHORT, "--seeds", "1", "2", "--exp-name", "whole", script=POPULATION)
    assert result.returncode == 0, result.stderr
    return whole


def assert_ends_as(cut, whole):
    """Each seed's run under `cut` logged every value and saved every weight as the same seed's run under `whole`."""
    for seed in (1, 2):
        (whole_dir,) = glob.glob(str(whole / "runs" / f"*__{seed}__*"))
        (cut_dir,) = glob.glob(str(cut / "runs" / f"*__{seed}__*"))
        assert logged(cut_dir) == logged(whole_dir)
        mine = torch.load(os.path.join(cut_dir, ddpg.MODEL_FILE), weights_only=True)["agent"]
        theirs = torch.load(os.path.join(whole_dir, ddpg.MODEL_FILE), weights_only=True)["agent"]
        for net in ("actor", "critic"):
            assert all(torch.equal(mine[net][k], theirs[net][k]) for k in theirs[net]), (seed, net)


def test_sigint_then_the_printed_command_ends_as_a_population_left_alone(tmp_path, whole_population):
    cut = tmp_path / "cut"
    cut.mkdir()
    proc = subprocess.Popen([sys.executable, POPULATION, *SHORT, "--seeds", "1", "2", "--exp-name", "cut"], cwd=cut,
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.time() + 600
    while len(glob.glob(str(cut / "runs" / "*" / ddpg.CHECKPOINT_FILE))) < 2:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(POLL_S)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    command = next(line for line in stdout.splitlines() if line.startswith("resume with: python "))
    dirs = command.split(" --resume ")[1].split()
    assert sorted(dirs) == sorted(os.path.join("runs", os.path.basename(d)) for d in glob.glob(str(cut / "runs" / "*")))
    steps = {torch.load(cut / d / ddpg.CHECKPOINT_FILE, weights_only=True)["global_step"] for d in dirs}
    assert len(steps) == 1 and 500 <= steps.pop() < 1500  # every seed stopped at the same step, mid-run
    assert command.startswith(f"resume with: python {POPULATION} --resume ")
    resumed = run_cli(cut, "--resume", *dirs, script=POPULATION)  # the command as printed
    assert resumed.returncode == 0, resumed.stderr
    assert_ends_as(cut, whole_population)
    again = run_cli(cut, "--resume", *dirs, script=POPULATION)
    assert again.returncode == 0 and "has finished" in again.stdout  # a finished population trains nothing


# Imported first by the population's process (PYTHONPATH): SIGKILL right after the first of the two renames that put
# the seeds' checkpoints of step 1000 in place, written beside it (population.PENDING): whatever a single run's own
# checkpoint write does, the population's all-or-none write is what is cut.
KILL_BETWEEN_TWO_RENAMES = f"""
import os, signal
real_replace, renamed = os.replace, []
def replace(src, dst, **options):
    real_replace(src, dst, **options)
    renamed.extend([dst] if str(src).endswith("{population.PENDING}") else [])
    if len(renamed) == 3:  # step 500: two renames; step 1000: the first
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
"""


def test_a_population_killed_between_two_renames_resumes_to_the_same_end(tmp_path, whole_population):
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "sitecustomize.py").write_text(KILL_BETWEEN_TWO_RENAMES)
    (tmp_path / "cut").mkdir()
    killed = run_cli(tmp_path / "cut", *SHORT, "--seeds", "1", "2", "--exp-name", "cut",
                     env=subprocess_env(str(tmp_path / "fake")), script=POPULATION)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # the population renamed its seeds' checkpoints
    dirs = sorted(glob.glob(str(tmp_path / "cut" / "runs" / "*")))
    steps = [torch.load(os.path.join(d, ddpg.CHECKPOINT_FILE), weights_only=True)["global_step"] for d in dirs]
    assert sorted(steps) == [500, 1000]  # one seed a period behind, its checkpoint of step 1000 beside its place
    resumed = run_cli(tmp_path / "cut", "--resume", *dirs, script=POPULATION)
    assert resumed.returncode == 0, resumed.stderr
    assert "its step 1000 put in place (the population stopped while saving it)" in resumed.stdout
    assert "resuming" in resumed.stdout and "at step 1000/1500" in resumed.stdout
    assert_ends_as(tmp_path / "cut", whole_population)


def test_renames_are_finished_only_for_one_whole_population_stopped_between_them(tmp_path):
    def write(run_dir, step, members, beside=""):
        os.makedirs(run_dir, exist_ok=True)
        path = os.path.join(run_dir, ddpg.CHECKPOINT_FILE + beside)
        torch.save({"args": {}, "global_step": step, population.KEY: members}, path)

    def step(run_dir):
        return torch.load(os.path.join(run_dir, ddpg.CHECKPOINT_FILE), weights_only=True)["global_step"]

    a, b, c = (str(tmp_path / name) for name in "abc")
    write(a, 500, ["a", "b"])
    write(a, 1000, ["a", "b"], beside=population.PENDING)  # killed while writing step 1000: b's not written yet
    write(b, 500, ["a", "b"])
    write(c, 1000, ["c", "d"])  # a run of another population, at step 1000
    population.finish_renames((a, b))  # no renames had begun
    with pytest.raises(ddpg.UsageError, match="was trained with 1 other seeds: resume them together"):
        population.check_whole((a, c))  # not one population
    assert step(a) == 500 and os.path.isfile(os.path.join(a, ddpg.CHECKPOINT_FILE + population.PENDING))
    write(b, 1000, ["a", "b"])  # the renames of step 1000 had begun: b's is in place
    population.finish_renames((a, b))
    assert step(a) == 1000 and not os.path.exists(os.path.join(a, ddpg.CHECKPOINT_FILE + population.PENDING))


def test_a_seed_whose_model_cannot_be_written_fails_the_population(in_tmp, monkeypatch, capsys):
    real_save = ddpg.save_atomic

    def disk_full_for_seed_5s_model(obj, path):
        if path.endswith(ddpg.MODEL_FILE) and "__5__" in path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path + ddpg.BESIDE)
        real_save(obj, path)

    monkeypatch.setattr(ddpg, "save_atomic", disk_full_for_seed_5s_model)
    out = population.train_population(short_args(total_timesteps=1000), seeds=(4, 5))
    assert out["status"] == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("ddpg.py: error: step 1000: cannot write ") and "No space left on device" in line
    assert "__5__" in line  # seed 5's run directory


def test_a_refused_or_failed_resume_leaves_no_run_open(in_tmp, monkeypatch):
    first, second = population.train_population(short_args(total_timesteps=1000, save_model=False), seeds=(4, 5))[
        "run_dirs"
    ]
    path = os.path.join(first, ddpg.CHECKPOINT_FILE)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["args"]["total_timesteps"] = 1500  # not finished: resuming it opens its run
    torch.save(checkpoint, path)
    with open(os.path.join(second, ddpg.CHECKPOINT_FILE), "wb") as f:
        f.write(b"damaged")
    handler, before = signal.getsignal(signal.SIGINT), files_of(first)
    with pytest.raises(ddpg.UsageError, match="not a readable ddpg.py checkpoint"):
        population.train_population(ddpg.Args(), resume=(first, second))
    assert signal.getsignal(signal.SIGINT) is handler
    assert files_of(first) == before  # no run was opened: no new TensorBoard file
    os.close(ddpg.lock_run_dir(first))  # not "in use"
    # the second member's logs cannot be opened: the member opened before it is released
    torch.save(checkpoint | {"args": checkpoint["args"] | {"seed": 5}}, os.path.join(second, ddpg.CHECKPOINT_FILE))
    real_writer = ddpg.SummaryWriter

    def disk_full_for_second(run_dir, **options):
        if run_dir == second:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), run_dir)
        return real_writer(run_dir, **options)

    monkeypatch.setattr(ddpg, "SummaryWriter", disk_full_for_second)
    with pytest.raises(ddpg.Stopped) as stopped:  # it said why, in one line
        population.train_population(ddpg.Args(), resume=(first, second))
    assert isinstance(stopped.value.__cause__, OSError) and stopped.value.__cause__.errno == errno.ENOSPC
    assert signal.getsignal(signal.SIGINT) is handler
    os.close(ddpg.lock_run_dir(first))


def test_a_new_population_whose_member_cannot_open_leaves_no_run_directory(in_tmp, monkeypatch, capsys):
    import report  # benchmarks/report.py: it reads a run directory's name (conftest puts it on the path)

    real_writer = ddpg.SummaryWriter

    def disk_full_for_seed_2(run_dir, **options):
        if report.run_name(run_dir).seed == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), run_dir)
        return real_writer(run_dir, **options)

    monkeypatch.setattr(ddpg, "SummaryWriter", disk_full_for_seed_2)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(ddpg.Stopped):
        population.train_population(short_args(), seeds=(1, 2, 3))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "No space left on device; training stopped (no checkpoint)" in line
    assert os.listdir("runs") == []  # seed 1's, opened before, is removed with seed 2's; seed 3's never made
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_non_finite_value_stops_the_population_naming_the_seed(in_tmp, capsys):
    args = short_args(env_id="tests.envs:NanReward-v0", total_timesteps=2000, learning_starts=100,
                      checkpoint_frequency=100, eval_frequency=100, eval_episodes=1)  # fmt: skip
    out = population.train_population(args, seeds=(4, 5))
    assert out["status"] == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("ddpg.py: error: step ") and (": seed 4: " in line or ": seed 5: " in line)
    assert " is not finite; training stopped" in line
    assert "each run's last good checkpoint is kept; resume with: " in line
    for run_dir in out["run_dirs"]:
        checkpoint = torch.load(os.path.join(run_dir, ddpg.CHECKPOINT_FILE), weights_only=True)
        assert all(torch.isfinite(p).all() for net in ("actor", "critic") for p in checkpoint["agent"][net].values())


def assert_every_seed_resumes_from(run_dirs, step):
    """Every seed's checkpoint is at `step`, none half written, and the population resumes from them to its end."""
    for run_dir in run_dirs:
        assert torch.load(os.path.join(run_dir, ddpg.CHECKPOINT_FILE), weights_only=True)["global_step"] == step
        assert not glob.glob(os.path.join(run_dir, "*.tmp"))
    resumed = population.train_population(short_args(), resume=tuple(run_dirs))
    assert resumed["status"] == 0 and all(np.isfinite(r).all() for r in resumed["eval_returns"])


def test_a_nan_parameter_of_one_seed_stops_the_population_at_the_checkpoint_naming_it(in_tmp, monkeypatch, capsys):
    real_check = ddpg.Run.check_finite

    def check_with_a_nan(run):
        if run.args.seed == 5 and run.global_step == 1000:  # as if an update had left it
            with torch.no_grad():
                run.agent.actor.net[0].bias[0] = float("inf")
        real_check(run)

    monkeypatch.setattr(ddpg.Run, "check_finite", check_with_a_nan)
    out = population.train_population(short_args(total_timesteps=1000), seeds=(4, 5))  # stopped at its last step
    assert out["status"] == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("ddpg.py: error: step 1000: seed 5: parameter actor.net.0.bias is not finite; training")
    monkeypatch.setattr(ddpg.Run, "check_finite", real_check)
    assert_every_seed_resumes_from(out["run_dirs"], 500)  # seed 4's checkpoint of step 1000 was not written either


def test_a_failed_checkpoint_write_of_one_seed_keeps_every_seeds_last_checkpoint(in_tmp, monkeypatch, capsys):
    real_write = ddpg.save_atomic

    def disk_full_for_seed_5_at_step_1000(obj, path):
        if obj.get("global_step") == 1000 and obj["args"]["seed"] == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{path}.tmp")
        return real_write(obj, path)

    monkeypatch.setattr(ddpg, "save_atomic", disk_full_for_seed_5_at_step_1000)
    out = population.train_population(short_args(total_timesteps=1000), seeds=(4, 5))  # stopped at its last step
    assert out["status"] == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("ddpg.py: error: step 1000: cannot write ") and "No space left on device" in line
    monkeypatch.setattr(ddpg, "save_atomic", real_write)
    assert_every_seed_resumes_from(out["run_dirs"], 500)  # seed 4's written file was not put in place


BAD_POPULATIONS = [
    (["--seeds"], "--seeds needs at least one seed"),
    (["--seeds", "1", "2", "1"], "--seeds: seed 1 is given twice"),
    (["--seeds", "1", "-3"], "--seeds takes whole numbers in [0, 2^32), got 1 -3"),
    (["--seed", "7", "--seeds", "1", "2"], "--seed 7 and --seeds 1 2: give one or the other"),
    (["--resume"], "--resume needs a run directory"),
]


@pytest.mark.parametrize("cli_args, message", BAD_POPULATIONS, ids=[" ".join(a) for a, _ in BAD_POPULATIONS])
def test_bad_seeds_are_refused_in_one_line(tmp_path, cli_args, message):
    result = run_main(tmp_path, *cli_args, "--no-cuda", main=population.main, script=POPULATION)
    assert_refused_in_one_line(result, message, tmp_path)


def test_runs_that_are_not_one_population_are_not_resumed_together(tmp_path):
    pair = run_cli(tmp_path, *SHORT, "--seeds", "1", "2", "--exp-name", "pop", "--total-timesteps", "800",
                   script=POPULATION)  # fmt: skip
    single = run_cli(tmp_path, *SHORT, "--seed", "3", "--exp-name", "single", "--total-timesteps", "800")
    assert pair.returncode == single.returncode == 0
    members = sorted(glob.glob(os.path.join("runs", "*__pop__*"), root_dir=tmp_path))
    (alone,) = glob.glob(os.path.join("runs", "*__single__*"), root_dir=tmp_path)
    for run_dir in (*members, alone):  # not finished: a resume would go on
        os.remove(tmp_path / run_dir / ddpg.MODEL_FILE)
        path = tmp_path / run_dir / ddpg.CHECKPOINT_FILE
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["args"]["total_timesteps"] = 1500
        torch.save(checkpoint, path)
    before = sorted(os.listdir(tmp_path / "runs"))
    for dirs, message in (
        ([members[0], alone], f"{members[0]} was trained with 1 other seeds: resume them together"),
        ([members[0]], f"python {POPULATION} --resume {' '.join(members)}"),
        ([alone, *members], f"{alone} is a single run, not a population's: python ddpg.py --resume {alone}"),
    ):
        result = run_main(tmp_path, "--resume", *dirs, main=population.main, script=POPULATION)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path / "runs")) == before
    # a member resumed alone with ddpg.py trains on as a single run (docs/sweeps.md) ...
    extended = run_cli(tmp_path, "--resume", members[0])
    assert extended.returncode == 0 and f"resuming {members[0]} at step 800/1500" in extended.stdout, extended.stderr
    assert population.KEY not in torch.load(tmp_path / members[0] / ddpg.CHECKPOINT_FILE, weights_only=True)
    # ... and is no longer resumed with the others
    result = run_main(tmp_path, "--resume", *members, main=population.main, script=POPULATION)
    assert result.returncode == 2 and f"{members[0]} is a single run, not a population's" in result.stderr


@needs_cuda
def test_cuda_graphs_of_a_population_compute_exactly_its_eager_steps(in_tmp):
    graphed = population.train_population(short_args(cuda=True, exp_name="graphs"), seeds=(1, 2))
    eager = population.train_population(short_args(cuda=True, cudagraphs=False, exp_name="eager"), seeds=(1, 2))
    for k in range(2):
        assert all(torch.equal(a, b) for a, b in zip(weights(graphed["agents"][k]), weights(eager["agents"][k])))
        assert torch.equal(rows(graphed["replay_buffers"][k]), rows(eager["replay_buffers"][k]))


def test_the_benchmarks_separate_processes_train_what_the_population_trains():
    import bench  # benchmarks/bench.py: its K processes, beside the K-seed population (conftest puts it on the path)

    args, seeds = bench.training_args("HalfCheetah-v5", 1000, cuda=True), (1, 2, 3)
    threads = max(1, bench.available_cores() // 3)  # as `sweep.py --jobs 3` gives them
    for seed, options in zip(seeds, bench.separate_runs(args, seeds), strict=True):
        expected = dataclasses.replace(args, seed=seed, threads=threads)
        assert tyro.cli(ddpg.Args, args=options) == expected
