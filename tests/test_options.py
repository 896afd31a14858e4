"""Options seen in what a run does: the exploration noise --noise-type draws, and the thread count --threads sets."""

import dataclasses
import os

import numpy as np
import pytest
import torch
import tyro

import ddpg
from tests.conftest import ALL_CORES
from tests.envs import HORIZON

PENDULUM_EPISODE = 200  # steps of a Pendulum-v1 episode (its time limit)
LEARNING_STARTS, TOTAL = 100, 1100  # 1000 actions of the policy with noise


@pytest.mark.parametrize("noise_type", ["ou", "gaussian"])
def test_a_runs_exploration_noise_is_the_noise_type_asked_for(in_tmp, noise_type):
    sigma, theta = 0.1, ddpg.OU_RATE
    # a learning rate so small that the actor never changes: each action is then mu(s) of the final actor + noise
    args = tyro.cli(ddpg.Args, args=["--noise-type", noise_type, "--exploration-noise", str(sigma),
                                     "--learning-rate", "1e-30", "--total-timesteps", str(TOTAL),
                                     "--learning-starts", str(LEARNING_STARTS), "--batch-size", "32",
                                     "--hidden-size", "8", "--eval-frequency", str(TOTAL), "--eval-episodes", "1",
                                     "--checkpoint-frequency", "0", "--no-save-model", "--no-cuda",
                                     "--threads", "1"])  # fmt: skip
    out = ddpg.train(args)
    assert out["status"] == 0
    _, action_space = ddpg.check_env(args.env_id)
    half_width = float((action_space.high - action_space.low)[0] / 2)
    rows = slice(LEARNING_STARTS, TOTAL)  # the buffer's row i holds step i's transition
    obs, actions = out["replay_buffer"].obs[rows], out["replay_buffer"].actions[rows]
    with torch.no_grad():
        noise = ((actions - out["agent"].actor(obs)) / half_width)[:, 0].numpy()  # in units of the half-width

    # lag-1 pairs within an episode (the OU process restarts with each one): x_{t+1} regressed on x_t
    steps = np.arange(rows.start, rows.stop)
    same_episode = steps[1:] // PENDULUM_EPISODE == steps[:-1] // PENDULUM_EPISODE
    x, y = noise[:-1][same_episode], noise[1:][same_episode]
    slope = (x * y).sum() / (x * x).sum()
    innovations = y - slope * x  # what each step draws afresh
    # OU: x_{t+1} = (1 - theta) x_t + sigma eps_t; Gaussian: x_{t+1} = sigma eps_t (independent draws)
    expected_slope = {"ou": 1 - theta, "gaussian": 0.0}[noise_type]
    assert slope == pytest.approx(expected_slope, abs=0.1)
    assert innovations.std() == pytest.approx(sigma, rel=0.1)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_the_default_thread_count_is_one_whatever_the_cores_and_threads_sets_it(in_tmp):
    tiny = ddpg.Args(env_id="tests.envs:Counter-v0", total_timesteps=4 * HORIZON, learning_starts=2 * HORIZON,
                     batch_size=HORIZON, hidden_size=8, eval_episodes=1, save_model=False, cuda=False)  # fmt: skip
    share = os.sched_getaffinity(0)  # (torch's thread count is put back by conftest's keep_torch_threads)
    all_cores = ALL_CORES or share  # every core, also where a pytest-xdist worker has its share of them
    try:
        for cores in ({min(all_cores)}, all_cores):  # one core, then every core this process may use
            os.sched_setaffinity(0, cores)
            for threads, expected in ((ddpg.Args.threads, 1), (3, 3)):
                torch.set_num_threads(expected + 1)  # another count: the run must set it
                assert ddpg.train(dataclasses.replace(tiny, threads=threads))["status"] == 0
                assert torch.get_num_threads() == expected, (cores, threads)
    finally:
        os.sched_setaffinity(0, share)
