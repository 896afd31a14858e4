"""The fast paths compute what the plain eager step computes: --compile on the CPU, CUDA graphs on a GPU."""

import os

import numpy as np
import pytest
import torch

import ddpg
from tests.test_units import ASYMMETRIC_BOX as BOX
from tests.test_units import rows

OBS_DIM, ACT_DIM, NUM_ENVS = 3, BOX.shape[0], 2
BATCH_SIZE, GAMMA, TAU = 16, 0.99, 0.1
CAPACITY, FIRST_ROWS = 40, 30  # the buffer wraps around during the rounds below
# Enough rounds that each graph (update with and without the actor step, store-and-select) is recorded, then
# replayed.
ROUNDS = 2 * (ddpg.CUDA_GRAPH_WARMUP + 2)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# torch.compile builds its kernels with the system's C++ compiler (ddpg.py refuses --compile without one)
needs_compiler = pytest.mark.skipif(ddpg.find_cpp_compiler() is None, reason="needs a C++ compiler")


def env_step(rng):
    """What one env step sends to the device: (obs, actions, rewards, next_obs, terminations), done, obs to act on."""
    done = rng.random(NUM_ENVS) < 0.3
    transition = (
        rng.standard_normal((NUM_ENVS, OBS_DIM)),
        rng.uniform(BOX.low, BOX.high, (NUM_ENVS, ACT_DIM)),
        rng.standard_normal(NUM_ENVS),
        rng.standard_normal((NUM_ENVS, OBS_DIM)),
        done & (rng.random() < 0.5),
    )
    return transition, done, rng.standard_normal((NUM_ENVS, OBS_DIM))


class Lesson:
    """The loop's three steps as the lesson's own functions, called as the loop calls them."""

    explore, update = staticmethod(ddpg.explore), staticmethod(ddpg.update)

    def __init__(self, rb):
        self.add = rb.add


def setup(device: str, fast: bool = False, **speed_options):
    """Agent, buffer (partly filled), noise and the loop's steps from one fixed start: the lesson's own (`Lesson`)
    where `fast_path` gives none, else its `FastPath`; `fast`: the GPU's FastPath wherever `device` is."""
    args = ddpg.Args(hidden_size=32, learning_rate=1e-2, tau=TAU, gamma=GAMMA, exploration_noise=0.3,
                     batch_size=BATCH_SIZE, num_envs=NUM_ENVS, **speed_options)  # fmt: skip
    device = torch.device(device)
    torch.manual_seed(0)
    agent = ddpg.make_agent(OBS_DIM, BOX, args, device)
    rb = ddpg.ReplayBuffer(CAPACITY, OBS_DIM, ACT_DIM, device)
    g = torch.Generator().manual_seed(1)
    first = [torch.randn(FIRST_ROWS, *column.shape[1:], generator=g).to(device) for column in ddpg.Batch(
        rb.obs, rb.actions, rb.rewards, rb.next_obs, rb.terminations)]  # fmt: skip
    rb.add(*first)
    noise = ddpg.make_noise(args, ACT_DIM, device)
    if fast:
        steps = ddpg.FastPath(agent, rb, noise, args, device)
    else:
        steps = ddpg.fast_path(agent, rb, noise, args, device) or Lesson(rb)
    return agent, rb, noise, steps


def device_round(agent, rb, noise, steps, step, update_actor=True):
    """What the loop does on the device per env step: an update, then store the step's transitions and select the
    actions for the next observations (noisy; the noise restarts where an episode ended)."""
    losses = steps.update(agent, rb, BATCH_SIZE, GAMMA, TAU, update_actor)
    transition, done, act_on = step
    steps.add(*transition)
    return losses, steps.explore(agent, noise, act_on, done).cpu()


def run_rounds(device: str, fast: bool = False, **speed_options):
    """ROUNDS rounds of the loop's device work (the actor step every other round): the losses, the final weights,
    the actions and the buffer."""
    agent, rb, noise, steps = setup(device, fast, **speed_options)
    rng, losses, actions = np.random.default_rng(0), [], []
    for i in range(ROUNDS):
        round_losses, round_actions = device_round(agent, rb, noise, steps, env_step(rng), update_actor=i % 2 == 1)
        losses.append([None if x is None else x.item() for x in round_losses])
        actions.append(torch.as_tensor(round_actions))
    weights = [p.detach().cpu().clone() for net in (agent.actor, agent.critic, agent.target_actor,
                                                   agent.target_critic) for p in net.parameters()]  # fmt: skip
    if isinstance(steps, ddpg.FastPath) and isinstance(steps.learn, ddpg.CudaGraph):  # replayed after warm-up
        assert len(steps.learn.graphs) == 2 and len(steps.device_step.graphs) == 1
    assert int(rb.size) == CAPACITY and int(rb.pos) == (FIRST_ROWS + ROUNDS * NUM_ENVS) % CAPACITY  # wrapped
    return losses, weights, actions, rows(rb).cpu()


def assert_close(fast, eager, rtol=1e-5, atol=1e-6):
    (fast_losses, fast_weights, fast_actions, fast_rows), (losses, weights, actions, rows) = fast, eager
    assert [x is None for row in fast_losses for x in row] == [x is None for row in losses for x in row]
    np.testing.assert_allclose(np.array(fast_losses, dtype=float), np.array(losses, dtype=float), rtol=rtol, atol=atol)
    for a, b in zip(fast_weights + fast_actions, weights + actions, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    assert torch.equal(fast_rows, rows)  # what was stored does not depend on the networks


def test_the_rounds_move_the_networks_and_the_actions():
    losses, _, actions, _ = run_rounds("cpu")
    assert len({row[0] for row in losses}) == ROUNDS  # every update's loss differs
    assert len({tuple(a.flatten().tolist()) for a in actions}) == ROUNDS  # and the actions differ


def test_the_cpu_runs_the_lessons_own_steps():
    agent, rb, noise, _ = setup("cpu")
    assert ddpg.fast_path(agent, rb, noise, ddpg.Args(cudagraphs=True), torch.device("cpu")) is None  # no graphs


def test_the_gpus_fast_path_gives_exactly_the_lessons_steps_on_the_cpu():
    # their packing, staging and storing order, where CI runs them: the same draws, the same rows, the same updates
    assert_close(run_rounds("cpu", fast=True), run_rounds("cpu"), rtol=0, atol=0)


@needs_compiler
def test_compile_gives_the_same_updates_and_actions():
    assert_close(run_rounds("cpu", compile=True), run_rounds("cpu"))


@needs_cuda
def test_cuda_graphs_give_exactly_the_updates_and_actions_of_eager_cuda():
    graphed = run_rounds("cuda")  # CUDA graphs are the default
    assert_close(graphed, run_rounds("cuda", cudagraphs=False), rtol=0, atol=0)  # same kernels, replayed


@needs_cuda
@needs_compiler
def test_compile_with_cuda_graphs_gives_the_same_updates_and_actions():
    assert_close(run_rounds("cuda", compile=True), run_rounds("cuda", cudagraphs=False))


@needs_cuda
def test_one_copy_to_the_device_and_one_back_per_step():
    parts = setup("cuda")
    rng = np.random.default_rng(0)
    rounds = [env_step(rng) for _ in range(2 * ROUNDS)]
    for step in rounds[:ROUNDS]:  # warm-up and recording
        device_round(*parts, step)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for step in rounds[ROUNDS:]:
            device_round(*parts, step)
    names = [event.name for event in prof.events()]
    assert sum(name.startswith("Memcpy HtoD") for name in names) == ROUNDS, names
    assert sum(name.startswith("Memcpy DtoH") for name in names) == ROUNDS, names


def pendulum_args(**overrides):
    settings = dict(total_timesteps=900, learning_starts=300, batch_size=64, hidden_size=32, eval_frequency=900,
                    eval_episodes=2, buffer_size=500, checkpoint_frequency=0)  # fmt: skip
    return ddpg.Args(**{**settings, **overrides})


@pytest.mark.parametrize("cuda", [False, pytest.param(True, marks=needs_cuda)], ids=["cpu", "cuda-graphs"])
def test_training_resumed_from_a_checkpoint_equals_the_run_left_alone(in_tmp, cuda):
    whole = ddpg.train(pendulum_args(exp_name="whole", cuda=cuda))  # 900 steps wrap the 500-transition buffer
    part = ddpg.train(
        pendulum_args(exp_name="part", cuda=cuda, total_timesteps=600, checkpoint_frequency=600, save_model=False)
    )  # a finished run (with model.pt) would not resume
    path = os.path.join(part["run_dir"], ddpg.CHECKPOINT_FILE)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["args"]["total_timesteps"] = 900  # go on to where the whole run ended
    torch.save(checkpoint, path)
    resumed = ddpg.train(ddpg.Args(resume=(part["run_dir"],)))
    assert resumed["status"] == 0
    for net in ("actor", "critic", "target_actor", "target_critic"):
        for a, b in zip(getattr(whole["agent"], net).parameters(), getattr(resumed["agent"], net).parameters()):
            assert torch.equal(a, b), net
    assert torch.equal(rows(whole["replay_buffer"]), rows(resumed["replay_buffer"]))
