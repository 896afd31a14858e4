"""Deep Deterministic Policy Gradient (DDPG) in one file of PyTorch.

DDPG (Lillicrap et al. 2016, "Continuous control with deep reinforcement learning", arXiv:1509.02971) learns a
deterministic policy mu(s) (the actor) for continuous actions together with an action-value function Q(s, a)
(the critic). The critic is fitted off-policy to a Bellman target computed with slowly moving copies of both
networks (the targets); the actor climbs the critic's gradient with respect to the action.

Algorithm 1 of the paper, which the loop in `train` follows step by step:

    initialise critic Q(s, a | theta^Q) and actor mu(s | theta^mu); targets Q' <- Q, mu' <- mu; replay buffer R
    for each step t:
        select a_t = mu(s_t) + N_t (exploration noise); execute a_t, observe r_t and s_{t+1}
        store (s_t, a_t, r_t, s_{t+1}) in R
        sample a minibatch of N transitions (s_i, a_i, r_i, s_{i+1}) from R
        set y_i = r_i + gamma * Q'(s_{i+1}, mu'(s_{i+1}))
        update the critic by minimising L = 1/N sum_i (y_i - Q(s_i, a_i))^2
        update the actor with the sampled policy gradient 1/N sum_i grad_a Q(s_i, a)|a=mu(s_i) grad mu(s_i)
        update the targets: theta' <- tau * theta + (1 - tau) * theta'

Where this file differs from the paper, and why (the README says more):
- Targets stop bootstrapping only at real terminations: y_i = r_i + gamma * (1 - terminated_i) * Q'(...).
  A time-limit cut is not a terminal state, so it bootstraps from the true last observation.
- Actions are uniformly random for the first `learning_starts` steps (as in TD3 and CleanRL), to fill the buffer.
- Both networks are two hidden layers of `hidden_size` ReLU units with the action fed to the critic's input
  (CleanRL, TD3), not 400-300 units with the action entering at the second layer; no batch normalisation and no
  critic weight decay. The output layers keep the paper's small uniform initialisation.
- One learning rate for both networks, Adam; the actor may be updated less often than the critic
  (`policy_frequency`, a TD3 idea; 1 is the paper's setting).
- Exploration noise is the paper's Ornstein-Uhlenbeck process (theta=0.15) by default, or Gaussian noise.

Run `python ddpg.py --help` for the options; `tensorboard --logdir runs` to watch training.
"""

import dataclasses
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment, part of the run directory's name"""
    seed: int = 1
    """seed of python, numpy, torch and the environments"""
    torch_deterministic: bool = True
    """make torch use deterministic algorithms (`torch.backends.cudnn.deterministic`)"""
    cuda: bool = True
    """train on the GPU when one is available (falls back to the CPU otherwise)"""
    capture_video: bool = False
    """record the first episode of every evaluation as mp4 under the run directory's `videos/`"""
    save_model: bool = False
    """write the networks and these arguments to `model.pt` in the run directory at the end"""

    env_id: str = "Pendulum-v1"
    """gymnasium id of the environment (continuous `Box` actions, flat `Box` observations)"""
    total_timesteps: int = 10_000
    """number of environment steps to train for, summed over all environments"""
    learning_rate: float = 1e-3
    """Adam learning rate of both the actor and the critic"""
    buffer_size: int = 1_000_000
    """capacity of the replay buffer, in transitions"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """target smoothing coefficient: theta' <- tau * theta + (1 - tau) * theta'"""
    batch_size: int = 256
    """number of transitions sampled from the replay buffer per update"""
    hidden_size: int = 256
    """width of the two hidden layers of the actor and of the critic"""
    noise_type: Literal["ou", "gaussian"] = "ou"
    """exploration noise: Ornstein-Uhlenbeck (the paper's) or independent Gaussian (TD3, CleanRL)"""
    exploration_noise: float = 0.2
    """noise scale sigma, as a fraction of the action range's half-width"""
    learning_starts: int = 1000
    """environment steps of uniformly random actions before learning starts"""
    policy_frequency: int = 1
    """update the actor and the targets once every this many critic updates"""
    num_envs: int = 1
    """number of environments stepped together (one update per transition collected)"""
    eval_frequency: int = 2_000
    """evaluate the deterministic policy every this many environment steps (and at the end)"""
    eval_episodes: int = 10
    """number of episodes per evaluation"""


# Named constants of the algorithm and of the logging.
OU_THETA = 0.15  # mean-reversion rate of the Ornstein-Uhlenbeck noise (the paper's value)
FINAL_LAYER_INIT = 3e-3  # output layers start uniform in [-3e-3, 3e-3], so first Q values and actions are ~0
EVAL_SEED_OFFSET = 10_000  # the evaluation env is seeded apart from the training envs
LOG_INTERVAL = 100  # log losses and SPS every this many env steps (reading a loss is a host sync point)
PROGRESS_INTERVAL_S = 10.0  # print a progress line at most this often, in seconds
RECENT_EPISODES = 10  # the progress line shows the mean return of this many latest training episodes


class UsageError(Exception):
    """A mistake in the command line or in the environment chosen: reported as one line, no traceback."""


# ----------------------------------------------------------------------------------------------------------------
# Environments


def make_env(env_id: str, render: bool = False) -> gym.Env:
    """One environment; `render` makes it produce rgb frames for video."""
    return gym.make(env_id, render_mode="rgb_array") if render else gym.make(env_id)


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """`num_envs` copies stepped together, with episode statistics in `infos["episode"]`.

    SAME_STEP autoreset: when an episode ends, `step` already returns the first observation of the next episode,
    and the true last observation of the finished one is in `infos["final_obs"]` (see `true_next_obs`).
    """
    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id) for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def check_spaces(env: gym.Env) -> None:
    """DDPG needs a flat continuous observation and a bounded continuous action."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise UsageError(f"--env-id {env.spec.id}: observation space must be a flat Box, got {obs_space}")
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        raise UsageError(f"--env-id {env.spec.id}: action space must be a continuous 1-D Box, got {act_space}")
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise UsageError(f"--env-id {env.spec.id}: action bounds must be finite, got {act_space}")


def true_next_obs(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """The observation that really followed each action.

    Trap: with autoreset, `next_obs` of an env whose episode just ended is the reset observation of its next
    episode. Storing that as s_{t+1} would teach the critic a jump that never happens; the true last
    observation is in `infos["final_obs"]`.
    """
    if "_final_obs" not in infos:
        return next_obs
    real = next_obs.copy()
    for i in np.flatnonzero(infos["_final_obs"]):
        real[i] = infos["final_obs"][i]
    return real


# ----------------------------------------------------------------------------------------------------------------
# Replay buffer


class Batch(NamedTuple):
    obs: torch.Tensor  # (batch, obs_dim)
    actions: torch.Tensor  # (batch, act_dim)
    rewards: torch.Tensor  # (batch,)
    next_obs: torch.Tensor  # (batch, obs_dim)
    terminations: torch.Tensor  # (batch,) 1.0 where s_{t+1} is terminal, else 0.0


class ReplayBuffer:
    """Fixed-size store of transitions as preallocated tensors on the training device.

    Adding writes rows in place and wraps around when full (the oldest transitions are overwritten); sampling
    draws indices uniformly on the device, so a batch never leaves it.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.storage = Batch(
            obs=torch.zeros((capacity, obs_dim), dtype=torch.float32, device=device),
            actions=torch.zeros((capacity, act_dim), dtype=torch.float32, device=device),
            rewards=torch.zeros(capacity, dtype=torch.float32, device=device),
            next_obs=torch.zeros((capacity, obs_dim), dtype=torch.float32, device=device),
            terminations=torch.zeros(capacity, dtype=torch.float32, device=device),
        )

    def add(self, obs, actions, rewards, next_obs, terminations) -> None:
        """Store one transition per env; arguments are arrays with a leading (num_envs,) dimension."""
        n = len(rewards)
        idx = (self.pos + torch.arange(n)) % self.capacity
        for store, value in zip(self.storage, (obs, actions, rewards, next_obs, terminations)):
            store[idx.to(store.device)] = torch.as_tensor(value, dtype=torch.float32).to(store.device)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, self.size, (batch_size,), device=self.storage.obs.device)
        return Batch(*(store[idx] for store in self.storage))


# ----------------------------------------------------------------------------------------------------------------
# Exploration noise, in units of the action range's half-width (the caller scales it to the action space)


class OUNoise:
    """Ornstein-Uhlenbeck process x <- x + theta * (0 - x) + sigma * eps, eps ~ N(0, 1), one state per env.

    Successive values are correlated, which suits physical control with inertia (the paper's argument).
    Each env's state restarts at 0 when its episode ends. The stationary variance is sigma^2 / (2 theta - theta^2).
    """

    def __init__(self, num_envs: int, act_dim: int, sigma: float, device: torch.device, theta: float = OU_THETA):
        self.sigma, self.theta = sigma, theta
        self.state = torch.zeros((num_envs, act_dim), device=device)
        self.eps = torch.empty_like(self.state)

    def sample(self) -> torch.Tensor:
        self.state.mul_(1.0 - self.theta).add_(self.eps.normal_(), alpha=self.sigma)  # in place: no allocation
        return self.state

    def reset(self, done: torch.Tensor) -> None:
        """Restart the process of the envs where `done` (bool, (num_envs,)) is True."""
        self.state.masked_fill_(done.unsqueeze(-1), 0.0)


class GaussianNoise:
    """Independent N(0, sigma^2) noise at every step (TD3, CleanRL)."""

    def __init__(self, num_envs: int, act_dim: int, sigma: float, device: torch.device):
        self.sigma = sigma
        self.eps = torch.empty((num_envs, act_dim), device=device)

    def sample(self) -> torch.Tensor:
        return self.eps.normal_(std=self.sigma)

    def reset(self, done: torch.Tensor) -> None:
        """Nothing to restart: the noise has no memory."""


def make_noise(args: Args, act_dim: int, device: torch.device) -> OUNoise | GaussianNoise:
    noise_class = {"ou": OUNoise, "gaussian": GaussianNoise}[args.noise_type]
    return noise_class(args.num_envs, act_dim, args.exploration_noise, device)


# ----------------------------------------------------------------------------------------------------------------
# Networks


def mlp(in_dim: int, hidden_size: int, out_dim: int) -> nn.Sequential:
    """in -> hidden -> hidden -> out with ReLUs; the output layer starts small (the paper's initialisation)."""
    net = nn.Sequential(
        nn.Linear(in_dim, hidden_size), nn.ReLU(),
        nn.Linear(hidden_size, hidden_size), nn.ReLU(),
        nn.Linear(hidden_size, out_dim),
    )  # fmt: skip
    nn.init.uniform_(net[-1].weight, -FINAL_LAYER_INIT, FINAL_LAYER_INIT)
    nn.init.uniform_(net[-1].bias, -FINAL_LAYER_INIT, FINAL_LAYER_INIT)
    return net


class Actor(nn.Module):
    """mu(s): a tanh output in [-1, 1] mapped affinely onto the action box [low, high], per dimension."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, hidden_size: int):
        super().__init__()
        self.net = mlp(obs_dim, hidden_size, action_space.shape[0])
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)
        # Buffers, not parameters: they move with .to(device) and are saved, but are not trained.
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs)) * self.action_scale + self.action_bias


class Critic(nn.Module):
    """Q(s, a): the observation and the action concatenated at the input."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_size: int):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden_size, 1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, actions], dim=-1)).squeeze(-1)  # (batch,)


# ----------------------------------------------------------------------------------------------------------------
# Learning: losses, target update, one full update


def critic_loss(critic, target_actor, target_critic, data: Batch, gamma: float):
    """Mean squared Bellman error; returns (loss, Q(s_i, a_i)).

    The target y is computed without gradient: it is a regression label, not something to move.
    Bootstrap through truncation, not termination: (1 - terminated) zeroes Q' only at real terminal states.
    """
    with torch.no_grad():
        next_q = target_critic(data.next_obs, target_actor(data.next_obs))
        y = data.rewards + gamma * (1.0 - data.terminations) * next_q
    q = critic(data.obs, data.actions)
    return F.mse_loss(q, y), q


def actor_loss(actor, critic, obs: torch.Tensor) -> torch.Tensor:
    """-mean Q(s, mu(s)): descending it ascends the critic along grad_a Q * grad mu (the policy gradient)."""
    return -critic(obs, actor(obs)).mean()


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """theta' <- tau * theta + (1 - tau) * theta', i.e. lerp(theta', theta, tau), for all parameters in one call."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


@dataclass
class Agent:
    """The four networks of DDPG and the two optimisers."""

    actor: Actor
    critic: Critic
    target_actor: Actor
    target_critic: Critic
    actor_optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer


def make_agent(obs_dim: int, action_space: gym.spaces.Box, args: Args, device: torch.device) -> Agent:
    """Alg. 1: initialise critic and actor randomly, and the targets as exact copies of them."""
    act_dim = action_space.shape[0]
    actor = Actor(obs_dim, action_space, args.hidden_size).to(device)
    critic = Critic(obs_dim, act_dim, args.hidden_size).to(device)
    target_actor = Actor(obs_dim, action_space, args.hidden_size).to(device)
    target_critic = Critic(obs_dim, act_dim, args.hidden_size).to(device)
    target_actor.load_state_dict(actor.state_dict())
    target_critic.load_state_dict(critic.state_dict())
    # fused=True: one kernel updates all parameters instead of several per tensor.
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=args.learning_rate, fused=True)
    return Agent(actor, critic, target_actor, target_critic, actor_optimizer, critic_optimizer)


def update(agent: Agent, data: Batch, gamma: float, tau: float, update_actor: bool):
    """One DDPG update from a sampled minibatch; returns (critic loss, mean Q, actor loss or None) as tensors."""
    # Alg. 1: set y_i = r_i + gamma * Q'(s_{i+1}, mu'(s_{i+1})); update the critic by minimising the loss
    qf_loss, q = critic_loss(agent.critic, agent.target_actor, agent.target_critic, data, gamma)
    agent.critic_optimizer.zero_grad(set_to_none=True)
    qf_loss.backward()
    agent.critic_optimizer.step()
    if not update_actor:
        return qf_loss.detach(), q.detach().mean(), None

    # Alg. 1: update the actor policy using the sampled policy gradient.
    # The critic is frozen meanwhile: no gradient is computed for its weights, and its optimiser never sees one.
    agent.critic.requires_grad_(False)
    pi_loss = actor_loss(agent.actor, agent.critic, data.obs)
    agent.actor_optimizer.zero_grad(set_to_none=True)
    pi_loss.backward()
    agent.actor_optimizer.step()
    agent.critic.requires_grad_(True)

    # Alg. 1: update the target networks
    soft_update(agent.target_actor, agent.actor, tau)
    soft_update(agent.target_critic, agent.critic, tau)
    return qf_loss.detach(), q.detach().mean(), pi_loss.detach()


def explore(actor: Actor, obs: torch.Tensor, noise: OUNoise | GaussianNoise) -> torch.Tensor:
    """a_t = mu(s_t) + N_t, with the noise scaled to the action range and the result clipped into the box."""
    with torch.no_grad():
        actions = actor(obs) + noise.sample() * actor.action_scale
        return actions.clamp_(actor.action_bias - actor.action_scale, actor.action_bias + actor.action_scale)


def evaluate(actor: Actor, env: gym.Env, num_episodes: int, device: torch.device) -> np.ndarray:
    """Returns of `num_episodes` episodes of the deterministic policy mu(s), without noise."""
    returns = np.zeros(num_episodes)
    for episode in range(num_episodes):
        obs, _ = env.reset()
        done = False
        while not done:
            with torch.no_grad():
                action = actor(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[episode] += reward
            done = terminated or truncated
    return returns


# ----------------------------------------------------------------------------------------------------------------
# Command line checks, saving


def check_args(args: Args) -> None:
    """Every impossible number is refused here, before any environment or run directory exists."""
    positive = ["total_timesteps", "buffer_size", "batch_size", "hidden_size", "policy_frequency", "num_envs",
                "eval_frequency", "eval_episodes", "learning_rate"]  # fmt: skip
    for name in positive:
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0.0 < args.tau <= 1.0:
        raise UsageError(f"--tau must be in (0, 1], got {args.tau}")
    if not 0.0 <= args.gamma <= 1.0:
        raise UsageError(f"--gamma must be in [0, 1], got {args.gamma}")
    if not args.exploration_noise >= 0.0:
        raise UsageError(f"--exploration-noise must be non-negative, got {args.exploration_noise}")
    if args.batch_size > args.buffer_size:
        raise UsageError(f"--batch-size ({args.batch_size}) must not exceed --buffer-size ({args.buffer_size})")
    if args.batch_size > args.learning_starts:
        raise UsageError(
            f"--batch-size ({args.batch_size}) must not exceed --learning-starts ({args.learning_starts}): "
            "the first update samples from that many transitions"
        )
    if args.learning_starts >= args.total_timesteps:
        raise UsageError(
            f"--learning-starts ({args.learning_starts}) must be below --total-timesteps ({args.total_timesteps})"
        )


def check_env(env_id: str) -> tuple[int, gym.spaces.Box]:
    """Make the environment once to check its id and spaces; returns (obs_dim, action_space)."""
    try:
        env = make_env(env_id)
    except (gym.error.Error, ModuleNotFoundError) as e:
        raise UsageError(f"--env-id {env_id}: {str(e).splitlines()[0]}") from None
    try:
        check_spaces(env)
        return env.observation_space.shape[0], env.action_space
    finally:
        env.close()


def save_atomic(obj: dict, path: str) -> None:
    """torch.save to a temporary file, then rename it: a crash mid-write never leaves a half-written `path`."""
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def make_run_dir(args: Args) -> str:
    """runs/<env_id>__<exp_name>__<seed>__<unix_time>, with a suffix if two runs start in the same second."""
    base = os.path.join("runs", f"{args.env_id.replace('/', '_')}__{args.exp_name}__{args.seed}__{int(time.time())}")
    run_dir, n = base, 1
    while True:
        try:
            os.makedirs(run_dir)  # fails if it exists, even when another process made it a moment ago
            return run_dir
        except FileExistsError:
            n += 1
            run_dir = f"{base}_{n}"


def hyperparameter_table(args: Args) -> str:
    rows = "\n".join(f"|{key}|{value}|" for key, value in dataclasses.asdict(args).items())
    return f"|param|value|\n|-|-|\n{rows}"


def format_seconds(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


# ----------------------------------------------------------------------------------------------------------------
# Training


def train(args: Args) -> dict:
    """Run DDPG as `args` says; returns the run directory, the final evaluation's returns, the agent and buffer."""
    check_args(args)
    obs_dim, action_space = check_env(args.env_id)
    act_dim = action_space.shape[0]

    use_cuda = args.cuda and torch.cuda.is_available()
    if args.cuda and not use_cuda:
        print("no CUDA device available: training on the CPU")
    device = torch.device("cuda" if use_cuda else "cpu")

    run_dir = make_run_dir(args)
    writer = SummaryWriter(run_dir)
    writer.add_text("hyperparameters", hyperparameter_table(args))

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.use_deterministic_algorithms(args.torch_deterministic)

    envs = make_vector_env(args.env_id, args.num_envs)
    envs.action_space.seed(args.seed)
    eval_env = make_env(args.env_id, render=args.capture_video)
    if args.capture_video:
        eval_env = gym.wrappers.RecordVideo(
            eval_env, os.path.join(run_dir, "videos"), episode_trigger=lambda ep: ep % args.eval_episodes == 0
        )
    eval_env.reset(seed=args.seed + EVAL_SEED_OFFSET)

    # Alg. 1: initialise critic, actor, their targets, and the replay buffer R
    agent = make_agent(obs_dim, action_space, args, device)
    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    noise = make_noise(args, act_dim, device)

    def evaluate_and_log(step: int) -> np.ndarray:
        returns = evaluate(agent.actor, eval_env, args.eval_episodes, device)
        writer.add_scalar("eval/episodic_return", returns.mean(), step)
        return returns

    obs, _ = envs.reset(seed=args.seed)
    start_time = last_print = time.time()
    global_step, num_updates = 0, 0
    recent_returns, eval_returns = [], None
    while global_step < args.total_timesteps:
        # Alg. 1: select action a_t = mu(s_t) + N_t (uniformly random actions while the buffer fills)
        if global_step < args.learning_starts:
            actions = envs.action_space.sample()
        else:
            obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
            actions = explore(agent.actor, obs_tensor, noise).cpu().numpy()  # host sync point: the env needs it

        # Alg. 1: execute action a_t and observe reward r_t and new state s_{t+1}
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        global_step += args.num_envs
        if "_episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                recent_returns = (recent_returns + [float(infos["episode"]["r"][i])])[-RECENT_EPISODES:]
                writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)
                writer.add_scalar("charts/episodic_length", infos["episode"]["l"][i], global_step)

        # Alg. 1: store transition (s_t, a_t, r_t, s_{t+1}) in R; s_{t+1} is the true next state, not a reset obs
        rb.add(obs, actions, rewards, true_next_obs(next_obs, infos), terminations)
        noise.reset(torch.as_tensor(terminations | truncations, device=device))
        obs = next_obs

        if global_step >= args.learning_starts:
            # One gradient step per transition collected, as in Alg. 1, whatever the number of envs.
            for _ in range(args.num_envs):
                # Alg. 1: sample a random minibatch of N transitions from R
                data = rb.sample(args.batch_size)
                num_updates += 1
                qf_loss, qf_values, pi_loss = update(
                    agent, data, args.gamma, args.tau, update_actor=num_updates % args.policy_frequency == 0
                )
                if pi_loss is not None:
                    last_pi_loss = pi_loss
            if global_step % LOG_INTERVAL < args.num_envs:
                writer.add_scalar("losses/qf_loss", qf_loss.item(), global_step)
                writer.add_scalar("losses/qf_values", qf_values.item(), global_step)
                writer.add_scalar("losses/actor_loss", last_pi_loss.item(), global_step)
                writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)

        if global_step % args.eval_frequency < args.num_envs or global_step >= args.total_timesteps:
            eval_returns = evaluate_and_log(global_step)

        now = time.time()
        if now - last_print >= PROGRESS_INTERVAL_S or global_step >= args.total_timesteps:
            last_print = now
            sps = global_step / (now - start_time)
            recent = f"{np.mean(recent_returns):.1f}" if recent_returns else "-"
            last_eval = f"{eval_returns.mean():.1f}" if eval_returns is not None else "-"
            print(
                f"step {global_step}/{args.total_timesteps} | SPS {sps:.0f} | return {recent} | eval {last_eval} "
                f"| elapsed {format_seconds(now - start_time)} "
                f"| left {format_seconds((args.total_timesteps - global_step) / sps)}",
                flush=True,
            )

    if args.save_model:
        model_path = os.path.join(run_dir, "model.pt")
        save_atomic(
            {"actor": agent.actor.state_dict(), "critic": agent.critic.state_dict(), "args": dataclasses.asdict(args)},
            model_path,
        )
        print(f"model saved to {model_path}")
    print(f"final evaluation: {eval_returns.mean():.1f} +- {eval_returns.std():.1f} over {len(eval_returns)} episodes")
    envs.close()
    eval_env.close()
    writer.close()
    return {"run_dir": run_dir, "eval_returns": eval_returns, "agent": agent, "replay_buffer": rb}


if __name__ == "__main__":
    try:
        train(tyro.cli(Args))
    except UsageError as e:
        sys.exit(f"ddpg.py: error: {e}")
