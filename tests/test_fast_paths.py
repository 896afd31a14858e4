"""--compile and --cudagraphs compute what the plain eager update and policy step compute."""

import numpy as np
import pytest
import torch

import ddpg
from tests.test_units import ASYMMETRIC_BOX as BOX
from tests.test_units import random_batch

OBS_DIM = 3
# Enough calls that each kind of update (with and without the actor step) is recorded and then replayed.
CALLS = 2 * (ddpg.CUDA_GRAPH_WARMUP + 2)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# torch.compile builds its kernels with the system's C++ compiler (ddpg.py refuses --compile without one)
needs_compiler = pytest.mark.skipif(ddpg.find_cpp_compiler() is None, reason="needs a C++ compiler")


def batches(device, n=CALLS):
    return [ddpg.Batch(*(x.to(device) for x in random_batch(obs_dim=OBS_DIM, seed=i))) for i in range(n)]


def run_steps(device: str, **speed_options):
    """Losses of CALLS updates from one fixed start, the final weights, and noisy actions for CALLS observations."""
    args = ddpg.Args(hidden_size=32, learning_rate=1e-2, tau=0.1, exploration_noise=0.3, **speed_options)
    torch.manual_seed(0)
    agent = ddpg.make_agent(OBS_DIM, BOX, args, torch.device(device))
    noise = ddpg.make_noise(args, BOX.shape[0], torch.device(device))
    learn, act = ddpg.step_functions(agent, noise, args)
    losses = []
    for i, data in enumerate(batches(device)):
        qf_loss, qf_values, pi_loss = learn(data, update_actor=i % 2 == 1)
        losses.append([qf_loss.item(), qf_values.item(), None if pi_loss is None else pi_loss.item()])
    weights = [p.detach().cpu().clone() for net in (agent.actor, agent.critic, agent.target_actor,
                                                   agent.target_critic) for p in net.parameters()]  # fmt: skip
    torch.manual_seed(1)  # the same noise for every path
    actions = [act(data.obs[:1]).cpu().clone() for data in batches(device)]  # new inputs at every call
    if args.cudagraphs:  # the calls after the warm-up did go through recorded graphs
        assert len(learn.graphs) == 2 and len(act.graphs) == 1
    return losses, weights, actions


def assert_close(fast, eager, rtol=1e-5, atol=1e-6):
    (fast_losses, fast_weights, fast_actions), (losses, weights, actions) = fast, eager
    assert [x is None for row in fast_losses for x in row] == [x is None for row in losses for x in row]
    np.testing.assert_allclose(np.array(fast_losses, dtype=float), np.array(losses, dtype=float), rtol=rtol, atol=atol)
    for a, b in zip(fast_weights + fast_actions, weights + actions, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@needs_compiler
def test_compile_gives_the_same_updates_and_actions():
    eager = run_steps("cpu")
    assert len({row[0] for row in eager[0]}) == CALLS  # the updates did move: every loss differs
    assert len({tuple(a.flatten().tolist()) for a in eager[2]}) == CALLS  # and the actions differ
    assert_close(run_steps("cpu", compile=True), eager)


@needs_cuda
def test_cuda_graphs_give_exactly_the_updates_and_actions_of_eager_cuda():
    assert_close(run_steps("cuda", cudagraphs=True), run_steps("cuda"), rtol=0, atol=0)  # same kernels, replayed


@needs_cuda
@needs_compiler
def test_compile_with_cuda_graphs_gives_the_same_updates_and_actions():
    assert_close(run_steps("cuda", compile=True, cudagraphs=True), run_steps("cuda"))


@needs_cuda
def test_training_with_cuda_graphs_runs_and_logs_finite_values(in_tmp):
    args = ddpg.Args(cuda=True, cudagraphs=True, total_timesteps=700, learning_starts=300, batch_size=64,
                     hidden_size=32, policy_frequency=2, eval_frequency=700, eval_episodes=2)  # fmt: skip
    out = ddpg.train(args)
    assert out["status"] == 0 and np.isfinite(out["eval_returns"]).all()
    assert all(torch.isfinite(p).all() for p in out["agent"].critic.parameters())
