"""The training loop on environments whose right answers are known: time limits, terminations, determinism."""

import re

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

import ddpg
from tests.envs import HORIZON, TERMINAL_STEP

GAMMA = 0.5  # short horizon: Q converges in few target updates and the analytic values are far apart
STEP = 1.0 / HORIZON  # the counter envs' observation grows by this much per step


def counter_args(env_id, **overrides):
    settings = dict(
        env_id=env_id, cuda=False, total_timesteps=1500, learning_starts=200, batch_size=64, hidden_size=32,
        gamma=GAMMA, tau=0.05, eval_frequency=1500, eval_episodes=3,
        exploration_noise=2.0,  # large: most noisy actions leave the box, and the env raises if one gets out
    )  # fmt: skip
    settings.update(overrides)
    return ddpg.Args(**settings)


def q_of_policy(agent, states):
    obs = torch.tensor(states, dtype=torch.float32)[:, None]
    with torch.no_grad():
        return agent.critic(obs, agent.actor(obs)).numpy()


def stored(rb):
    return {name: getattr(rb, name)[: rb.size].numpy() for name in ("obs", "next_obs", "terminations")}


@pytest.mark.parametrize("num_envs", [1, 3])
def test_time_limit_truncation_stores_true_final_obs_and_bootstraps(in_tmp, num_envs):
    # Counter-v0: reward 1 forever, cut by a time limit. The correct value is the infinite sum 1 / (1 - gamma) = 2
    # in every state, the last one included; treating the cut as terminal would give 1 there, 1.5 before, ...
    out = ddpg.train(counter_args("tests.envs:Counter-v0", num_envs=num_envs))
    data = stored(out["replay_buffer"])
    assert len(data["obs"]) == 1500
    # every stored s_{t+1} is s_t plus one step: a reset observation (0) after a cut would break this
    np.testing.assert_allclose(data["next_obs"] - data["obs"], STEP, atol=1e-6)
    assert data["obs"].max() == pytest.approx((HORIZON - 1) * STEP) and data["next_obs"].max() == pytest.approx(1.0)
    assert not data["terminations"].any()
    q = q_of_policy(out["agent"], [k * STEP for k in range(HORIZON)])
    np.testing.assert_allclose(q, 1 / (1 - GAMMA), atol=0.15)
    np.testing.assert_array_equal(out["eval_returns"], HORIZON)


def test_termination_stops_bootstrapping(in_tmp):
    # TerminatingCounter-v0 terminates after TERMINAL_STEP steps: Q(s_k) = sum_{j < TERMINAL_STEP - k} gamma^j.
    out = ddpg.train(counter_args("tests.envs:TerminatingCounter-v0", num_envs=2))
    data = stored(out["replay_buffer"])
    np.testing.assert_allclose(data["next_obs"] - data["obs"], STEP, atol=1e-6)
    terminal = np.isclose(data["next_obs"][:, 0], TERMINAL_STEP * STEP)
    np.testing.assert_array_equal(data["terminations"], terminal)
    expected = [sum(GAMMA**j for j in range(TERMINAL_STEP - k)) for k in range(TERMINAL_STEP)]
    q = q_of_policy(out["agent"], [k * STEP for k in range(TERMINAL_STEP)])
    np.testing.assert_allclose(q, expected, atol=0.15)
    np.testing.assert_array_equal(out["eval_returns"], TERMINAL_STEP)


@pytest.mark.parametrize("env_id, length", [("tests.envs:Counter-v0", HORIZON),
                                             ("tests.envs:TerminatingCounter-v0", TERMINAL_STEP)])  # fmt: skip
def test_evaluations_log_the_critics_estimate_beside_the_discounted_return(in_tmp, env_id, length):
    # reward 1 at each of an episode's `length` steps: its discounted return is sum_{t < length} gamma^t
    gamma = 0.9  # not a power of two: the sum is rounded
    args = counter_args(env_id, gamma=gamma, total_timesteps=600, learning_starts=200, eval_frequency=300, threads=1)
    out = ddpg.train(args)
    events = EventAccumulator(out["run_dir"], size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    discounted, q = events.Scalars(ddpg.EVAL_DISCOUNTED_TAG), events.Scalars(ddpg.EVAL_Q_TAG)
    assert [e.step for e in discounted] == [e.step for e in q] == [300, 600]  # at each evaluation
    float32 = float(np.finfo(np.float32).eps)  # TensorBoard stores a scalar as a float32
    for e in discounted:
        assert e.value == pytest.approx(sum(gamma**t for t in range(length)), rel=float32, abs=0)
    # the last evaluation's estimate: the trained critic's Q(s_1, mu(s_1)) at its 3 first observations, all [0]
    first_obs = torch.zeros(3, 1)
    with torch.no_grad():
        expected = out["agent"].critic(first_obs, out["agent"].actor(first_obs)).mean().item()
    assert q[-1].value == pytest.approx(expected, rel=float32, abs=0)
    assert q[0].value != q[-1].value  # the critic of step 300, not the same one
    # the two on one chart, the layout TensorBoard's custom scalars dashboard reads
    (config,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    (category,) = layout.category
    (chart,) = category.chart
    assert [re.fullmatch(tag, name) is not None for tag in chart.multiline.tag
            for name in (ddpg.EVAL_Q_TAG, ddpg.EVAL_DISCOUNTED_TAG)] == [True, False, False, True]  # fmt: skip


def pendulum_args(seed, **overrides):
    settings = dict(seed=seed, cuda=False, total_timesteps=700, learning_starts=300, batch_size=64, hidden_size=32,
                    eval_frequency=700, eval_episodes=2)  # fmt: skip
    settings.update(overrides)
    return ddpg.Args(**settings)


def final_state(out):
    """Final weights, final evaluation, and the training episodes' returns as logged."""
    agent = out["agent"]
    events = EventAccumulator(out["run_dir"], size_guidance={"scalars": 0})
    events.Reload()
    episodes = [(e.step, e.value) for e in events.Scalars("charts/episodic_return")]
    weights = [p.detach().clone() for net in (agent.actor, agent.critic) for p in net.parameters()]
    return weights, out["eval_returns"], episodes


def test_same_seed_gives_identical_runs_and_another_seed_does_not(in_tmp):
    (weights_a, eval_a, episodes_a), (weights_b, eval_b, episodes_b) = (
        final_state(ddpg.train(pendulum_args(seed=3, exp_name=name, torch_deterministic=True))) for name in "ab"
    )
    assert len(episodes_a) == 3  # 700 steps: three full 200-step episodes
    assert episodes_a == episodes_b
    assert all(torch.equal(a, b) for a, b in zip(weights_a, weights_b))
    np.testing.assert_array_equal(eval_a, eval_b)
    weights_c, eval_c, episodes_c = final_state(ddpg.train(pendulum_args(seed=4, exp_name="c")))
    assert episodes_a != episodes_c and not np.array_equal(eval_a, eval_c)
    assert not all(torch.equal(a, c) for a, c in zip(weights_a, weights_c))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_keeps_buffer_and_networks_on_the_gpu(in_tmp):
    out = ddpg.train(pendulum_args(seed=1, cuda=True))
    assert all(getattr(out["replay_buffer"], name).is_cuda for name in ddpg.Batch._fields)
    assert all(p.is_cuda for p in out["agent"].actor.parameters())
    assert np.isfinite(out["eval_returns"]).all()


def test_update_t_samples_the_buffer_before_transition_t_and_precedes_the_next_action(in_tmp, monkeypatch):
    calls = []  # (what, rows in R at that moment) in the order the loop makes them
    real_update, real_explore, real_add = ddpg.update, ddpg.explore, ddpg.ReplayBuffer.add

    def update(agent, rb, *args, **kwargs):
        calls.append(("update", int(rb.size)))
        return real_update(agent, rb, *args, **kwargs)

    def explore(agent, *args, **kwargs):
        calls.append(("act", int(rb_of_run[0].size)))
        return real_explore(agent, *args, **kwargs)

    def add(rb, *transition):
        rb_of_run[:] = [rb]
        calls.append(("store", int(rb.size)))
        return real_add(rb, *transition)

    rb_of_run = []
    monkeypatch.setattr(ddpg, "update", update)
    monkeypatch.setattr(ddpg, "explore", explore)
    monkeypatch.setattr(ddpg.ReplayBuffer, "add", add)
    ddpg.train(counter_args("tests.envs:Counter-v0", total_timesteps=260, eval_frequency=260, eval_episodes=1))
    # the lesson's own steps on the CPU: 200 random steps only store, each transition at once
    assert calls[:200] == [("store", t) for t in range(200)]
    # from then on, per step: a_t chosen, the update (R still without this step's transition), then t stored
    assert calls[200:] == [entry for t in range(200, 260) for entry in (("act", t), ("update", t), ("store", t))]


def test_with_policy_frequency_2_the_actor_and_targets_move_at_every_second_update_only(in_tmp, monkeypatch):
    moved = []  # per update: (critic moved, actor moved, target actor moved, target critic moved)
    real_update = ddpg.update

    def update(agent, *args, **kwargs):
        nets = ("critic", "actor", "target_actor", "target_critic")
        before = [[p.detach().clone() for p in getattr(agent, net).parameters()] for net in nets]
        losses = real_update(agent, *args, **kwargs)
        after = [list(getattr(agent, net).parameters()) for net in nets]
        moved.append(tuple(not all(torch.equal(a, b) for a, b in zip(x, y)) for x, y in zip(before, after)))
        return losses

    monkeypatch.setattr(ddpg, "update", update)
    ddpg.train(counter_args("tests.envs:Counter-v0", total_timesteps=260, policy_frequency=2, num_envs=2,
                            eval_frequency=260, eval_episodes=1))  # fmt: skip
    assert len(moved) == 60  # one update per transition collected once R holds learning_starts
    assert moved == [(True, n % 2 == 0, n % 2 == 0, n % 2 == 0) for n in range(1, 61)]


def test_ou_noise_restarts_with_every_episode_time_limits_included(in_tmp, monkeypatch):
    restarted, kept = [], []  # each env's OU state right after a reset: zero where its episode begins, else as it was
    real_reset = ddpg.OUNoise.reset

    def reset(noise, episode_starts):
        before = noise.state.clone()
        real_reset(noise, episode_starts)
        starts = episode_starts.bool()
        restarted.extend(noise.state[starts].abs().max(dim=-1).values.tolist())
        kept.append(torch.equal(noise.state[~starts], before[~starts]))

    monkeypatch.setattr(ddpg.OUNoise, "reset", reset)
    ddpg.train(counter_args("tests.envs:Counter-v0", total_timesteps=400, num_envs=2, eval_frequency=400,
                            eval_episodes=1))  # fmt: skip
    # Counter-v0 is only ever cut by its time limit: 200 steps of 2 envs at HORIZON steps an episode, after warm-up
    assert len(restarted) == (400 - 200) // 2 // HORIZON * 2
    assert restarted == [0.0] * len(restarted) and all(kept)
