"""Unit tests of the pieces of ddpg.py, each against an answer known in advance."""

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

import ddpg
from tests.envs import ACTION_HIGH, ACTION_LOW, HORIZON, TERMINAL_STEP

ASYMMETRIC_BOX = gym.spaces.Box(ACTION_LOW, ACTION_HIGH, dtype=np.float32)


def small_agent(obs_dim=3, action_space=ASYMMETRIC_BOX, seed=0):
    torch.manual_seed(seed)
    args = ddpg.Args(hidden_size=16, learning_rate=1e-2)
    return ddpg.make_agent(obs_dim, action_space, args, torch.device("cpu"))


def random_batch(n=32, obs_dim=3, act_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ddpg.Batch(
        obs=torch.randn(n, obs_dim, generator=g),
        actions=torch.rand(n, act_dim, generator=g),
        rewards=torch.randn(n, generator=g),
        next_obs=torch.randn(n, obs_dim, generator=g),
        terminations=(torch.rand(n, generator=g) < 0.3).float(),
    )


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def assert_same(a, b):
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def rows(rb):
    """A replay buffer's columns side by side, one row per transition: (capacity, 2 * obs_dim + act_dim + 2)."""
    return torch.cat([getattr(rb, name).reshape(rb.capacity, -1) for name in ddpg.Batch._fields], dim=1)


class Minibatch:
    """A stand-in for a replay buffer that `update` samples this one minibatch from, whatever the batch size."""

    def __init__(self, data: ddpg.Batch):
        self.data = data

    def sample(self, batch_size: int) -> ddpg.Batch:
        return self.data


# ---------------------------------------------------------------------------------------------------------------
# Replay buffer


def transitions(first, n, obs_dim=3, act_dim=2):
    """n distinct transitions numbered first, first+1, ...: every field holds its number (next_obs its number + 0.5,
    terminations its parity), as (obs, actions, rewards, next_obs, terminations) with a row per transition."""
    k = np.arange(first, first + n, dtype=np.float32)
    return (
        np.repeat(k[:, None], obs_dim, 1),
        np.repeat(k[:, None], act_dim, 1),
        k,
        np.repeat(k[:, None], obs_dim, 1) + 0.5,
        k % 2,
    )


def test_buffer_ring_overwrites_oldest_first():
    rb = ddpg.ReplayBuffer(capacity=5, obs_dim=3, act_dim=2, device=torch.device("cpu"))
    rb.add(*transitions(0, 3))
    assert rb.size == 3 and rb.pos == 3
    rb.add(*transitions(3, 4))  # 3 and 4 fill the end, 5 and 6 wrap around over 0 and 1
    assert rb.size == 5 and rb.pos == 2
    assert rb.rewards.tolist() == [5, 6, 2, 3, 4]
    assert rb.obs[:, 0].tolist() == [5, 6, 2, 3, 4]
    assert rb.next_obs[:, 2].tolist() == [5.5, 6.5, 2.5, 3.5, 4.5]
    assert rb.actions[:, 1].tolist() == [5, 6, 2, 3, 4]
    assert rb.terminations.tolist() == [1, 0, 0, 1, 0]


def test_buffer_samples_only_stored_rows_uniformly():
    rb = ddpg.ReplayBuffer(capacity=100, obs_dim=3, act_dim=2, device=torch.device("cpu"))
    rb.add(*transitions(0, 10))  # 90 rows still empty (zeros except row 0): they must never be drawn
    torch.manual_seed(0)
    draws = 20_000
    batch = rb.sample(draws)
    # each row of a sample is one whole stored transition, fields kept together
    assert torch.equal(batch.obs[:, 0], batch.rewards) and torch.equal(batch.actions[:, 0], batch.rewards)
    assert torch.equal(batch.next_obs[:, 0], batch.rewards + 0.5)
    counts = torch.bincount(batch.rewards.long(), minlength=10)
    assert len(counts) == 10  # nothing outside the 10 stored
    # uniform: each count is Binomial(20000, 0.1), std ~42; 5 std either side
    assert counts.min() > 2000 - 5 * 42 and counts.max() < 2000 + 5 * 42


def test_buffer_checkpoint_holds_only_the_filled_rows():
    rb = ddpg.ReplayBuffer(capacity=10_000, obs_dim=3, act_dim=2, device=torch.device("cpu"))
    rb.add(*transitions(0, 10))
    saved = io.BytesIO()
    torch.save(ddpg.buffer_state(rb), saved)
    assert saved.tell() < rows(rb).nbytes / 100  # the 10 rows and some framing, not the 10000 allocated
    restored = ddpg.ReplayBuffer(capacity=10_000, obs_dim=3, act_dim=2, device=torch.device("cpu"))
    ddpg.load_buffer_state(restored, torch.load(io.BytesIO(saved.getvalue()), weights_only=True))
    assert torch.equal(rows(restored), rows(rb)) and restored.size == 10 and restored.pos == 10


def test_buffer_memory_is_capacity_times_one_transition():
    obs_dim, act_dim, capacity = 17, 6, 1000
    rb = ddpg.ReplayBuffer(capacity, obs_dim, act_dim, torch.device("cpu"))
    transition_bytes = 4 * (obs_dim + act_dim + 1 + obs_dim + 1)  # float32 s, a, r, s', terminated
    columns = [getattr(rb, name) for name in ddpg.Batch._fields]

    def allocated():
        return sum(column.untyped_storage().nbytes() for column in columns)

    assert allocated() == capacity * transition_bytes
    rb.add(*transitions(0, 7, obs_dim, act_dim))
    assert allocated() == capacity * transition_bytes  # adding does not grow it
    assert all(getattr(rb, name) is column for name, column in zip(ddpg.Batch._fields, columns))  # written in place


# ---------------------------------------------------------------------------------------------------------------
# Exploration noise


@pytest.mark.parametrize("noise_type", ["ou", "gaussian"])
def test_make_noise_draws_the_noise_type_asked_for(noise_type):
    sigma, theta, num_envs, steps = 0.2, ddpg.OU_RATE, 4000, 200
    args = ddpg.Args(noise_type=noise_type, exploration_noise=sigma, num_envs=num_envs)
    torch.manual_seed(0)
    noise = ddpg.make_noise(args, act_dim=1, device=torch.device("cpu"))
    for _ in range(steps):  # OU: (1 - theta)^200 ~ 1e-14, the start at 0 is forgotten
        previous = noise.sample().clone()
    current = noise.sample()
    # OU: x' = (1 - theta) x + sigma eps  =>  Var = sigma^2 / (2 theta - theta^2), lag-1 correlation = 1 - theta.
    # Gaussian: Var = sigma^2, successive draws independent.
    variance, lag1 = {"ou": (sigma**2 / (2 * theta - theta**2), 1 - theta), "gaussian": (sigma**2, 0.0)}[noise_type]
    assert current.shape == (num_envs, 1)
    assert current.var().item() == pytest.approx(variance, rel=0.06)
    corr = torch.corrcoef(torch.stack([previous[:, 0], current[:, 0]]))[0, 1].item()
    assert corr == pytest.approx(lag1, abs=0.03)


def test_ou_noise_resets_only_the_envs_whose_episode_ended():
    torch.manual_seed(0)
    noise = ddpg.OUNoise(3, 2, 0.2, torch.device("cpu"))
    for _ in range(5):
        noise.sample()
    before = noise.state.clone()
    noise.reset(torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(noise.state[1], torch.zeros(2))
    assert torch.equal(noise.state[[0, 2]], before[[0, 2]]) and before[[0, 2]].abs().min() > 0


# ---------------------------------------------------------------------------------------------------------------
# Actor's action mapping and the clipping of noisy actions


def set_actor_output(actor, value):
    """Make the actor's pre-tanh output the constant `value` for every input."""
    with torch.no_grad():
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.fill_(value)


@pytest.mark.parametrize(
    "pre_tanh, expected", [(50.0, ACTION_HIGH), (-50.0, ACTION_LOW), (0.0, (ACTION_LOW + ACTION_HIGH) / 2)]
)
def test_actor_maps_tanh_onto_asymmetric_bounds(pre_tanh, expected):
    actor = ddpg.Actor(3, ASYMMETRIC_BOX, hidden_size=16)
    set_actor_output(actor, pre_tanh)
    out = actor(torch.randn(10, 3))
    assert torch.allclose(out, torch.as_tensor(expected).expand(10, 2), atol=1e-6)


def test_noisy_actions_are_clipped_into_the_box():
    agent = small_agent()
    set_actor_output(agent.actor, 3.0)  # near the upper bound: most noise pushes past it
    noise = ddpg.GaussianNoise(1000, 2, sigma=5.0, device=torch.device("cpu"))
    actions = ddpg.explore(agent, noise, torch.randn(1000, 3), episode_starts=np.zeros(1000, dtype=bool))
    low, high = torch.as_tensor(ACTION_LOW), torch.as_tensor(ACTION_HIGH)
    assert torch.all(actions >= low) and torch.all(actions <= high)
    assert torch.any(actions == high) and torch.any(actions == low)  # both bounds were hit: clipping, not luck


def test_noise_is_scaled_to_the_action_range():
    torch.manual_seed(0)
    box = gym.spaces.Box(np.array([-10.0], dtype=np.float32), np.array([10.0], dtype=np.float32))
    agent = small_agent(action_space=box)
    set_actor_output(agent.actor, 0.0)
    noise = ddpg.GaussianNoise(4000, 1, sigma=0.1, device=torch.device("cpu"))
    actions = ddpg.explore(agent, noise, np.random.default_rng(0).standard_normal((4000, 3)), np.zeros(4000, bool))
    assert actions.std().item() == pytest.approx(0.1 * 10, rel=0.05)  # sigma times the half-width


# ---------------------------------------------------------------------------------------------------------------
# Losses, gradients and target updates


def test_targets_start_equal_to_the_online_networks():
    agent = small_agent()
    assert_same(params(agent.actor), params(agent.target_actor))
    assert_same(params(agent.critic), params(agent.target_critic))


def test_critic_loss_matches_the_bellman_target_by_hand():
    agent = small_agent()
    with torch.no_grad():  # Q'(s', a') = 3 everywhere, Q(s, a) = 0.5 everywhere
        agent.target_critic.net[-1].weight.zero_()
        agent.target_critic.net[-1].bias.fill_(3.0)
        agent.critic.net[-1].weight.zero_()
        agent.critic.net[-1].bias.fill_(0.5)
    data = ddpg.Batch(
        obs=torch.zeros(3, 3), actions=torch.zeros(3, 2), next_obs=torch.zeros(3, 3),
        rewards=torch.tensor([1.0, -2.0, 0.0]), terminations=torch.tensor([0.0, 1.0, 0.0]),
    )  # fmt: skip
    loss, q = ddpg.critic_loss(agent.critic, agent.target_actor, agent.target_critic, data, gamma=0.9)
    y = torch.tensor([1.0 + 0.9 * 3.0, -2.0, 0.0 + 0.9 * 3.0])  # no bootstrap from the terminal transition
    assert torch.allclose(q, torch.full((3,), 0.5))
    assert loss.item() == pytest.approx(((0.5 - y) ** 2).mean().item(), rel=1e-6)


def test_critic_loss_sends_no_gradient_to_the_actor_or_the_targets():
    agent = small_agent()
    loss, _ = ddpg.critic_loss(agent.critic, agent.target_actor, agent.target_critic, random_batch(), 0.99)
    loss.backward()
    for net in (agent.actor, agent.target_actor, agent.target_critic):
        assert all(p.grad is None for p in net.parameters())
    assert all(p.grad is not None for p in agent.critic.parameters())


def test_actor_step_leaves_the_critic_untouched():
    data = random_batch()
    full, critic_only = small_agent(), small_agent()
    ddpg.update(full, Minibatch(data), len(data.obs), gamma=0.99, tau=0.1, update_actor=True)
    # the same critic step alone
    loss, _ = ddpg.critic_loss(critic_only.critic, critic_only.target_actor, critic_only.target_critic, data, 0.99)
    loss.backward()
    critic_only.critic_optimizer.step()
    assert_same(params(full.critic), params(critic_only.critic))
    # and the actor's loss gave the critic no gradient: its grads are still the critic loss's
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(full.critic.parameters(), critic_only.critic.parameters()))
    assert all(p.requires_grad for p in full.critic.parameters())  # unfrozen afterwards


def test_update_without_actor_step_moves_only_the_critic():
    agent = small_agent()
    actor, targets = params(agent.actor), params(agent.target_actor) + params(agent.target_critic)
    critic = params(agent.critic)
    _, _, pi_loss = ddpg.update(agent, Minibatch(random_batch()), 32, gamma=0.99, tau=0.1, update_actor=False)
    assert pi_loss is None
    assert_same(params(agent.actor), actor)
    assert_same(params(agent.target_actor) + params(agent.target_critic), targets)
    assert not all(torch.equal(a, b) for a, b in zip(params(agent.critic), critic))


def test_the_actor_step_raises_q_of_the_policy_under_the_critic_it_was_taken_with():
    data = random_batch()
    agent, critic_step_only = small_agent(), small_agent()  # the same start
    # the critic the actor step sees: this update's critic step taken, then frozen
    loss, _ = ddpg.critic_loss(critic_step_only.critic, critic_step_only.target_actor, critic_step_only.target_critic,
                               data, 0.99)  # fmt: skip
    loss.backward()
    critic_step_only.critic_optimizer.step()
    critic = critic_step_only.critic.requires_grad_(False)
    with torch.no_grad():
        before = critic(data.obs, agent.actor(data.obs))  # (batch,) Q(s, mu(s)) of the actor before its step
    ddpg.update(agent, Minibatch(data), len(data.obs), gamma=0.99, tau=0.1, update_actor=True)
    with torch.no_grad():
        after = critic(data.obs, agent.actor(data.obs))
    assert after.mean() > before.mean()  # the policy gradient climbs Q; descending +Q would lower it


def test_the_actor_loss_gradient_is_minus_the_mean_dq_da():
    agent, obs = small_agent(), random_batch().obs
    actions = agent.actor(obs).detach().requires_grad_()
    ddpg.actor_loss(lambda _: actions, agent.critic, obs).backward()  # an actor whose output is `actions`
    at = actions.detach().requires_grad_()
    agent.critic(obs, at).sum().backward()  # at.grad: dQ(s_i, a)/da at a = mu(s_i), one row per sample
    assert torch.allclose(actions.grad, -at.grad / len(obs))  # descending the loss moves each action up its dQ/da


@pytest.mark.parametrize("tau", [0.0, 0.3, 1.0])
def test_soft_update_arithmetic(tau):
    target, source = small_agent(seed=1).critic, small_agent(seed=2).critic
    before_target, before_source = params(target), params(source)
    ddpg.soft_update(target, source, tau)
    for new, old, src in zip(params(target), before_target, before_source):
        assert torch.allclose(new, tau * src + (1 - tau) * old, atol=1e-7)
    if tau == 1.0:
        assert_same(params(target), before_source)
    if tau == 0.0:
        assert_same(params(target), before_target)
    assert_same(params(source), before_source)


# ---------------------------------------------------------------------------------------------------------------
# The env runner: true last observations, episode statistics, exact restore


def test_runner_returns_the_true_last_obs_and_resets_after():
    runner = ddpg.EnvRunner("tests.envs:Counter-v0", num_envs=2, seed=0)
    actions = np.ones((2, 2), dtype=np.float32) * [1.0, -2.0]
    for t in range(1, HORIZON):
        next_obs, _, _, truncations, finished = runner.step(actions)
        assert next_obs[:, 0].tolist() == pytest.approx([t / HORIZON] * 2) and not truncations.any() and not finished
    next_obs, rewards, terminations, truncations, finished = runner.step(actions)
    assert next_obs[:, 0].tolist() == [1.0, 1.0]  # the true last observation, not the reset one
    assert truncations.all() and not terminations.any()
    assert finished == [(HORIZON, HORIZON), (HORIZON, HORIZON)]  # (return, length) of each finished episode
    assert runner.obs[:, 0].tolist() == [0.0, 0.0]  # what the agent acts on next: the new episode's start


@pytest.mark.parametrize("restore_at", [150, 250], ids=["first-episode", "after-a-time-limit"])
def test_runner_state_replays_to_the_same_env_state(restore_at):
    rng = np.random.default_rng(0)
    # 450 steps cross Pendulum's 200-step time limit, before the restore at 250 and after the one at 150
    actions = rng.uniform(-2, 2, size=(450, 2, 1)).astype(np.float32)
    original = ddpg.EnvRunner("Pendulum-v1", num_envs=2, seed=7)
    for a in actions[:restore_at]:
        original.step(a)
    restored = ddpg.EnvRunner("Pendulum-v1", num_envs=2, seed=123)  # another seed: all comes from the state
    ddpg.load_envs_state(restored, ddpg.envs_state(original))
    np.testing.assert_array_equal(restored.obs, original.obs)
    for a in actions[restore_at:]:  # the same future: same observations, rewards and episode ends
        for x, y in zip(original.step(a), restored.step(a)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_evaluation_runs_its_episodes_side_by_side_with_one_actor_call_per_step_and_one_critic_call():
    # Counter-v0 is cut after HORIZON steps, TerminatingCounter-v0 terminates one step earlier
    envs = [gym.make("tests.envs:Counter-v0"), gym.make("tests.envs:TerminatingCounter-v0")]
    actor, critic = ddpg.Actor(1, envs[0].action_space, hidden_size=8), ddpg.Critic(1, 2, hidden_size=8)
    calls, critic_calls = [], []
    actor.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    critic.register_forward_hook(lambda module, inputs, output: critic_calls.append(inputs[0].shape[0]))
    evaluation = ddpg.evaluate(actor, critic, envs, 0.5, torch.device("cpu"))
    assert evaluation.returns.tolist() == [HORIZON, TERMINAL_STEP]  # reward 1 per step; the ended one is not stepped
    assert calls == [2] * HORIZON  # one call per step, for both episodes at once
    assert critic_calls == [2]  # one call, at the first states of both
    # reward 1 per step: sum_{t < T} 0.5^t = 2 - 2^(1 - T)
    assert evaluation.discounted_returns.tolist() == [2 - 2 ** (1 - HORIZON), 2 - 2 ** (1 - TERMINAL_STEP)]


def test_evaluation_estimates_come_from_the_critic_at_each_episodes_first_state():
    envs = ddpg.make_eval_envs("Pendulum-v1", num_episodes=3, seed=5)
    obs_dim, action_space = ddpg.check_env("Pendulum-v1")
    actor, critic = ddpg.Actor(obs_dim, action_space, hidden_size=16), ddpg.Critic(obs_dim, 1, hidden_size=16)
    evaluation = ddpg.evaluate(actor, critic, envs, 0.99, torch.device("cpu"))
    first = torch.tensor(np.stack([env.reset()[0] for env in ddpg.make_eval_envs("Pendulum-v1", 3, seed=5)]))
    with torch.no_grad():
        np.testing.assert_array_equal(evaluation.q_estimates, critic(first, actor(first)).numpy())
    assert len(set(evaluation.q_estimates.tolist())) == 3  # three different first states


def test_a_replay_that_does_not_reach_the_saved_state_says_so(capsys):
    original = ddpg.EnvRunner("Pendulum-v1", num_envs=1, seed=7)
    for a in np.zeros((20, 1, 1), dtype=np.float32):
        original.step(a)
    state = ddpg.envs_state(original)
    restored = ddpg.EnvRunner("Pendulum-v1", num_envs=1, seed=7)
    ddpg.load_envs_state(restored, state)
    assert capsys.readouterr().out == ""  # a deterministic env replays to the saved state, silently
    state["obs"] = state["obs"] + 1.0  # as a checkpoint of an env that does not replay to what it was
    ddpg.load_envs_state(ddpg.EnvRunner("Pendulum-v1", num_envs=1, seed=7), state)
    assert "warning: the environment did not replay to the saved state" in capsys.readouterr().out
