"""Deep Deterministic Policy Gradient (DDPG) in one file of PyTorch.

DDPG (Lillicrap et al. 2016, "Continuous control with deep reinforcement learning", arXiv:1509.02971) learns a
deterministic policy mu(s) (the actor) for continuous actions together with an action-value function Q(s, a)
(the critic). The critic is fitted off-policy to a Bellman target computed with slowly moving copies of both
networks (the targets); the actor climbs the critic's gradient with respect to the action.

Algorithm 1 of the paper, whose steps `loop` (at the end of the lesson) labels one by one (in one changed order):

    initialise critic Q(s, a | theta^Q) and actor mu(s | theta^mu); targets Q' <- Q, mu' <- mu; replay buffer R
    for each episode:
        initialise a random process for exploration (the noise); receive the initial observation s_1
        for each step t:
            select a_t = mu(s_t | theta^mu) + noise_t; execute a_t, observe r_t and s_{t+1}
            store (s_t, a_t, r_t, s_{t+1}) in R
            sample a minibatch of N transitions (s_i, a_i, r_i, s_{i+1}) from R
            set y_i = r_i + gamma * Q'(s_{i+1}, mu'(s_{i+1} | theta^mu') | theta^Q')
            update the critic by minimising L = 1/N sum_i (y_i - Q(s_i, a_i | theta^Q))^2
            update the actor with the sampled policy gradient
                grad_{theta^mu} J ~ 1/N sum_i grad_a Q(s, a | theta^Q)|_{s=s_i, a=mu(s_i)} grad_{theta^mu} mu(s_i)
            update the targets: theta^Q' <- tau theta^Q + (1 - tau) theta^Q'
                                theta^mu' <- tau theta^mu + (1 - tau) theta^mu'

theta^Q and theta^mu are the networks' parameters; N is the minibatch size; gamma the discount; tau the targets' rate.
The loop here counts steps, not episodes: each environment starts its next episode when one ends (`EnvRunner.step`),
and the noise restarts there with it (`explore`), which are the paper's per-episode lines.

Where this file differs from the paper, and why (docs/algorithm.md says more):
- Targets stop bootstrapping only at real terminations: y_i = r_i + gamma * (1 - terminated_i) * Q'(...).
  A time-limit cut is not a terminal state, so it bootstraps from the true last observation.
- Actions are uniformly random until R holds `learning_starts` transitions (as in TD3 and CleanRL), and no update
  is made before: the first minibatches are drawn from many transitions, not from the first few.
- Both networks are two hidden layers of `hidden_size` ReLU units with the action fed to the critic's input
  (CleanRL, TD3), not 400-300 units with the action entering at the second layer; no batch normalisation and no
  critic weight decay. The hidden layers keep PyTorch's default initialisation, which is the paper's
  uniform(+-1/sqrt(fan_in)); the output layers keep the paper's small uniform initialisation.
- One Adam learning rate for both networks, 1e-3 (the paper: 1e-4 actor, 1e-3 critic), minibatches of 256 (64)
  and tau = 0.005 (0.001): TD3's and CleanRL's values, with which the targets follow the networks five times faster.
- The actor, and with it the targets, may be updated less often than the critic (`policy_frequency`, from TD3).
- Exploration noise is the paper's Ornstein-Uhlenbeck process (mean-reversion rate 0.15) by default, or Gaussian
  noise, which at the same `exploration_noise` spreads about half as wide (see `OUNoise`). Its sigma is in half-widths
  of the action box (the paper's is in action units), and the noisy action is clipped into the box.
- The update of step t comes before the environment step, not after storing transition t: it samples R as it was
  before t, and a_{t+1} is still chosen by the updated actor. The update needs nothing from the env step, so a GPU
  computes it while the CPU steps the environment, and a step costs max(env, update) instead of their sum.

The first part of the file is the algorithm, end to end, down to `train` and its `loop`. After the divider comes
engineering that a first reading may skip. `python ddpg.py --help` lists the options; `tensorboard --logdir runs`.
"""

import collections
import contextlib
import contextvars
import dataclasses
import datetime
import fcntl
import functools
import glob
import importlib.util
import itertools
import math
import os
import random
import re
import shutil
import signal
import socket
import sys
import threading
import time
import warnings
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
    # --- The algorithm: the environment and DDPG's hyperparameters ----------------------------------------------
    env_id: str = "Pendulum-v1"
    """gymnasium id of the environment (continuous `Box` actions, flat `Box` observations)"""
    total_timesteps: int = 10_000
    """number of environment steps to train for, summed over all environments"""
    learning_rate: float = 1e-3
    """Adam learning rate of both the actor and the critic (the paper: 1e-4 actor, 1e-3 critic)"""
    buffer_size: int = 1_000_000
    """capacity of the replay buffer, in transitions"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """target smoothing coefficient: theta' <- tau * theta + (1 - tau) * theta' (the paper: 0.001)"""
    batch_size: int = 256
    """number of transitions sampled from the replay buffer per update (the paper: 64)"""
    hidden_size: int = 64
    """width of the two hidden layers of the actor and of the critic (MuJoCo baselines use 256)"""
    noise_type: Literal["ou", "gaussian"] = "ou"
    """exploration noise: Ornstein-Uhlenbeck (the paper's) or independent Gaussian (TD3, CleanRL)"""
    exploration_noise: float = 0.2
    """noise scale sigma, in action half-widths (OU's stationary spread is ~1.9 sigma, Gaussian's is sigma)"""
    learning_starts: int = 1000
    """environment steps of uniformly random actions before learning starts"""
    policy_frequency: int = 1
    """update the actor and the targets once every this many critic updates (the paper: 1)"""
    num_envs: int = 1
    """number of environments stepped together (one update per transition collected)"""

    # --- The run: its name, the machine, logging and saving -----------------------------------------------------
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment, part of the run directory's name (not empty; no '/' or '__')"""
    seed: int = 1
    """seed of python, numpy, torch and the environments: the same seed on the CPU repeats a run exactly"""
    torch_deterministic: bool = True
    """CleanRL's flag: sets `torch.backends.cudnn.deterministic`, unused here (on the CPU, --seed repeats a run)"""
    cuda: bool = True
    """train on the GPU when one is available (falls back to the CPU otherwise)"""
    cudagraphs: bool = True
    """on CUDA, record the update and the store-and-act step once as CUDA graphs and replay them (no effect on CPU)"""
    compile: bool = False
    """compile the four networks with torch.compile: fused kernels, fewer launches (docs/speed.md: measured speeds)"""
    threads: int = 1
    """CPU threads torch uses (more pay only for large networks on cores that nothing else uses: docs/speed.md)"""
    track: bool = False
    """mirror the run to Weights & Biases: arguments, every TensorBoard scalar, evaluation videos (needs wandb)"""
    wandb_project_name: str = "ddpg.py"
    """W&B project; not CleanRL's `cleanRL`, as our defaults differ (noise, sizes): name that one to compare"""
    wandb_entity: str | None = None
    """W&B team or user to log to (None: your own default entity)"""
    capture_video: bool = False
    """mp4 of every evaluation's first episode, in the run's `videos/` (no display: MuJoCo draws with MUJOCO_GL=egl)"""
    save_model: bool = True
    """write the actor, the critic and these arguments to `model.pt` in the run directory at the end"""
    eval_frequency: int = 2_000
    """evaluate the deterministic policy every this many environment steps (and at the end)"""
    eval_episodes: int = 10
    """number of episodes per evaluation, run side by side"""
    checkpoint_frequency: int = 50_000
    """write a checkpoint to resume from every this many environment steps and at the end (0: only when interrupted)"""
    resume: tuple[str, ...] | None = None
    """run directory to go on with, from its checkpoint and with its saved arguments"""
    eval_checkpoint: str | None = None
    """instead of training, evaluate the actor of this run directory, checkpoint or saved model"""


OU_RATE = 0.15  # the OU noise's mean-reversion rate (the paper's value, which it calls theta)
FINAL_LAYER_INIT = 3e-3  # output layers start in [-3e-3, 3e-3]: first Q values ~0, first actions ~ the box's middle
EVAL_STREAM = 10_000  # evaluation env i of run seed s draws from the stream (s, EVAL_STREAM, i), apart from training
SAMPLE_RANGE = 2**62  # replay indices: uniform integers below this, modulo the fill level (a bias below size / 2^62)


class NotFinite(Exception):
    """A loss, a parameter or an action became NaN or infinite: the run stops, keeping its last good checkpoint."""


def as_tensor(values, device: torch.device) -> torch.Tensor:
    """The envs' numpy arrays as float32 tensors on `device` (tensors already there pass through as they are)."""
    return torch.as_tensor(values, dtype=torch.float32, device=device)


# ----------------------------------------------------------------------------------------------------------------
# Environments


def make_env(env_id: str, render: bool = False) -> gym.Env:
    """One environment; `render` makes it produce rgb frames for video."""
    if render:  # draw off screen, without SDL's and pygame's console messages
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    return gym.make(env_id, render_mode="rgb_array") if render else gym.make(env_id)


def seed_env(env: gym.Env, seed: int) -> None:
    """Seed the env's generator as `env.reset(seed=seed)` would, without starting an episode."""
    env.np_random, _ = gym.utils.seeding.np_random(seed)


class EnvRunner:
    """The training envs, stepped together (a gymnasium vector env), with each running episode's return and length.
    Finished envs are reset by `step` itself, *after* it has read their true last observation: gymnasium's default
    autoreset would hand back the next episode's first one in its place, a jump that never happens, as s_{t+1}.
    It also keeps what replays each running episode exactly (simulators are deterministic given these): the state of
    the env's random generator when the episode began (`start_rng`) and the actions taken since (`episode_actions`);
    checkpoints save them."""

    def __init__(self, env_id: str, num_envs: int, seed: int):
        self.envs = gym.vector.SyncVectorEnv(
            [lambda: make_env(env_id) for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.DISABLED
        )
        self.seeds = [seed + i for i in range(num_envs)]  # env i draws its episodes' starts from seed + i
        for env, env_seed in zip(self.envs.envs, self.seeds):
            seed_env(env, env_seed)
        self.envs.action_space.seed(seed)  # the uniformly random actions of the first steps
        self.episode_returns = np.zeros(num_envs)
        self.episode_lengths = np.zeros(num_envs, dtype=np.int64)  # 0 where `obs` begins an episode
        self.start_rng, self.episode_actions = [None] * num_envs, [[] for _ in range(num_envs)]
        self.obs = self.reset(np.ones(num_envs, dtype=bool))  # (num_envs, obs_dim): what the agent acts on

    def reset(self, mask: np.ndarray) -> np.ndarray:
        """Start a new episode in the envs where `mask` is True; returns every env's current observation."""
        self.episode_returns[mask], self.episode_lengths[mask] = 0.0, 0
        for i in np.flatnonzero(mask):
            self.start_rng[i], self.episode_actions[i] = self.envs.envs[i].np_random.bit_generator.state, []
        obs, _ = self.envs.reset(options={"reset_mask": mask})
        return obs

    def random_actions(self) -> np.ndarray:  # one per env, uniform in the action box
        return self.envs.action_space.sample()

    def step(self, actions: np.ndarray):
        """Returns (next_obs, rewards, terminations, truncations, finished episodes as [(return, length)]): next_obs
        is the true s_{t+1}; `self.obs`, what to act on next, is a new episode's first observation where one ended."""
        if not np.isfinite(actions).all():  # a diverged actor: stop before the envs get its NaNs
            raise NotFinite("the actor's action")
        for i, action in enumerate(actions):
            self.episode_actions[i].append(action)
        next_obs, rewards, terminations, truncations, _ = self.envs.step(actions)
        self.episode_returns += rewards
        self.episode_lengths += 1
        done = terminations | truncations
        finished = [(self.episode_returns[i], int(self.episode_lengths[i])) for i in np.flatnonzero(done)]
        self.obs = self.reset(done) if done.any() else next_obs
        return next_obs, rewards, terminations, truncations, finished

    def close(self) -> None:
        self.envs.close()


def make_eval_envs(
    env_id: str, num_episodes: int, seed: int, videos: int = 0, video_dir: str = "", name_prefix: str = "eval"
) -> list[gym.Env]:
    """One env per evaluation episode, seeded apart from the training envs; the first `videos` of them record mp4s."""
    envs = []
    for i in range(num_episodes):
        env = make_env(env_id, render=i < videos)
        if i < videos:
            prefix = name_prefix if videos == 1 else f"{name_prefix}-{i}"
            with warnings.catch_warnings():  # envs with their own names in one folder overwrite nothing
                warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
                env = gym.wrappers.RecordVideo(env, video_dir, name_prefix=prefix, episode_trigger=lambda ep: True)
        seed_env(env, int(np.random.SeedSequence([seed, EVAL_STREAM, i]).generate_state(1)[0]))
        envs.append(env)
    return envs


# ----------------------------------------------------------------------------------------------------------------
# Replay buffer


class Batch(NamedTuple):
    obs: torch.Tensor  # (batch, obs_dim)
    actions: torch.Tensor  # (batch, act_dim)
    rewards: torch.Tensor  # (batch,)
    next_obs: torch.Tensor  # (batch, obs_dim)
    terminations: torch.Tensor  # (batch,) 1.0 where s_{t+1} is terminal, else 0.0


class ReplayBuffer:
    """Fixed-size store of transitions (s_t, a_t, r_t, s_{t+1}, terminated), one preallocated tensor per column on
    the training device, a row per transition. Rows are written in place, wrapping around when full (the oldest
    overwritten)."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.capacity = capacity
        self.obs = torch.zeros((capacity, obs_dim), device=device)
        self.actions = torch.zeros((capacity, act_dim), device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.next_obs = torch.zeros((capacity, obs_dim), device=device)
        self.terminations = torch.zeros(capacity, device=device)
        # The next row to write and the rows filled, as tensors on the device: on a GPU, storing and sampling then
        # never wait for the host to read them.
        self.pos = torch.zeros((), dtype=torch.int64, device=device)
        self.size = torch.zeros((), dtype=torch.int64, device=device)

    def add(self, obs, actions, rewards, next_obs, terminations) -> None:
        """Alg. 1: store transition (s_t, a_t, r_t, s_{t+1}) in R, one per env (a row per env in each argument)."""
        device = self.obs.device
        idx = (self.pos + torch.arange(len(obs), device=device)) % self.capacity  # wraps around
        self.obs[idx] = as_tensor(obs, device)
        self.actions[idx] = as_tensor(actions, device)
        self.rewards[idx] = as_tensor(rewards, device)
        self.next_obs[idx] = as_tensor(next_obs, device)
        self.terminations[idx] = as_tensor(terminations, device)
        self.pos.copy_((self.pos + len(obs)) % self.capacity)
        self.size.copy_((self.size + len(obs)).clamp(max=self.capacity))

    def sample(self, batch_size: int) -> Batch:
        """N transitions drawn uniformly, with replacement, from the filled rows."""
        # randint(0, size) in effect; drawn modulo `size` so that a GPU never waits to read `size` on the host
        idx = torch.randint(SAMPLE_RANGE, (batch_size,), device=self.obs.device) % self.size
        return Batch(self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terminations[idx])


# ----------------------------------------------------------------------------------------------------------------
# Exploration noise, in units of the action range's half-width (the caller scales it to the action space)


class OUNoise:
    """Ornstein-Uhlenbeck process x <- x + rate * (0 - x) + sigma * eps, eps ~ N(0, 1), one state per env.

    Successive values are correlated, which suits physical control with inertia (the paper's argument). Each env's
    state restarts at 0 with its episode. The stationary variance is sigma^2 / (2 rate - rate^2): for rate = 0.15 a
    standard deviation of about 1.9 sigma, so at the same sigma, Gaussian noise explores about half as widely."""

    def __init__(self, num_envs: int, act_dim: int, sigma: float, device: torch.device, rate: float = OU_RATE):
        self.sigma, self.rate = sigma, rate
        self.state = torch.zeros((num_envs, act_dim), device=device)
        self.eps = torch.empty_like(self.state)

    def sample(self) -> torch.Tensor:
        self.state.mul_(1.0 - self.rate).add_(self.eps.normal_(), alpha=self.sigma)  # x <- (1 - rate) x + sigma eps
        return self.state

    def reset(self, episode_starts: torch.Tensor) -> None:  # (num_envs,): restart where 1.0
        self.state.mul_(1.0 - episode_starts.unsqueeze(-1))


class GaussianNoise:
    """Independent N(0, sigma^2) noise at every step (TD3, CleanRL)."""

    def __init__(self, num_envs: int, act_dim: int, sigma: float, device: torch.device):
        self.sigma = sigma
        self.eps = torch.empty((num_envs, act_dim), device=device)

    def sample(self) -> torch.Tensor:
        return self.eps.normal_(std=self.sigma)

    def reset(self, episode_starts: torch.Tensor) -> None:
        """Nothing to restart: the noise has no memory."""


def make_noise(args: Args, act_dim: int, device: torch.device) -> OUNoise | GaussianNoise:
    noise_class = {"ou": OUNoise, "gaussian": GaussianNoise}[args.noise_type]
    return noise_class(args.num_envs, act_dim, args.exploration_noise, device)


# ----------------------------------------------------------------------------------------------------------------
# Networks


def mlp(in_dim: int, hidden_size: int, out_dim: int) -> nn.Sequential:
    """in -> hidden -> hidden -> out with ReLUs; the output layer starts small (the paper's initialisation)."""
    net = nn.Sequential(
        nn.Linear(in_dim, hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, out_dim),
    )
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
    soft_update(target_actor, actor, tau=1.0)  # theta' <- theta: exact copies
    soft_update(target_critic, critic, tau=1.0)
    adam = functools.partial(torch.optim.Adam, lr=args.learning_rate, fused=True)  # fused: the same maths, faster
    actor_optimizer, critic_optimizer = adam(actor.parameters()), adam(critic.parameters())
    return Agent(actor, critic, target_actor, target_critic, actor_optimizer, critic_optimizer)


# ----------------------------------------------------------------------------------------------------------------
# Learning: the losses, the soft update, and the whole update


def critic_loss(critic, target_actor, target_critic, data: Batch, gamma: float):
    """L = 1/N sum_i (y_i - Q(s_i, a_i))^2 with y_i = r_i + gamma * (1 - terminated_i) * Q'(s_{i+1}, mu'(s_{i+1}));
    returns (L, Q(s_i, a_i)).

    The target y is computed without gradient: it is a regression label, not something to move.
    Bootstrap through truncation, not termination: (1 - terminated) zeroes Q' only at real terminal states."""
    with torch.no_grad():
        next_q = target_critic(data.next_obs, target_actor(data.next_obs))
        y = data.rewards + gamma * (1.0 - data.terminations) * next_q
    q = critic(data.obs, data.actions)
    return F.mse_loss(q, y), q


def actor_loss(actor, critic, obs: torch.Tensor) -> torch.Tensor:
    """-1/N sum_i Q(s_i, mu(s_i)): its gradient is minus the sampled policy gradient, so descending it ascends Q."""
    return -critic(obs, actor(obs)).mean()


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """theta' <- tau * theta + (1 - tau) * theta', parameter by parameter."""
    for target_param, param in zip(target.parameters(), source.parameters()):
        target_param.lerp_(param, tau)  # theta' + tau * (theta - theta'): the same average, in place


class Losses(NamedTuple):  # what one update reports, as tensors on the device
    critic: torch.Tensor  # the critic's loss L
    q_values: torch.Tensor  # mean Q(s_i, a_i) over the minibatch
    actor: torch.Tensor | None  # the actor's loss -mean Q(s_i, mu(s_i)); None when the actor was not updated


def update(agent: Agent, rb: ReplayBuffer, batch_size: int, gamma: float, tau: float, update_actor: bool) -> Losses:
    """One DDPG update, whole: a minibatch from R, the critic's step, then (if `update_actor`) the actor's step and
    the targets' soft update."""
    # Alg. 1: sample a random minibatch of N transitions (s_i, a_i, r_i, s_{i+1}) from R
    data = rb.sample(batch_size)

    # Alg. 1: set y_i = r_i + gamma * Q'(s_{i+1}, mu'(s_{i+1})); update the critic by minimising L (`critic_loss`)
    loss_q, q = critic_loss(agent.critic, agent.target_actor, agent.target_critic, data, gamma)
    agent.critic_optimizer.zero_grad(set_to_none=True)
    loss_q.backward()
    agent.critic_optimizer.step()
    losses = Losses(critic=loss_q.detach(), q_values=q.detach().mean(), actor=None)
    if not update_actor:
        return losses

    # Alg. 1: update the actor using the sampled policy gradient (`actor_loss`).
    # The critic is frozen meanwhile: no gradient is computed for its weights, and its optimiser never sees one.
    agent.critic.requires_grad_(False)
    loss_mu = actor_loss(agent.actor, agent.critic, data.obs)
    agent.actor_optimizer.zero_grad(set_to_none=True)
    loss_mu.backward()
    agent.actor_optimizer.step()
    agent.critic.requires_grad_(True)

    # Alg. 1: update the target networks (with the actor: with policy_frequency > 1, they too move less often)
    soft_update(agent.target_actor, agent.actor, tau)
    soft_update(agent.target_critic, agent.critic, tau)
    return losses._replace(actor=loss_mu.detach())


# ----------------------------------------------------------------------------------------------------------------
# Acting: exploration during training, the deterministic policy in evaluation


def explore(agent: Agent, noise: OUNoise | GaussianNoise, obs, episode_starts) -> torch.Tensor:
    """Alg. 1: select a_t = mu(s_t) + noise_t for each env's observation in `obs`, the noise scaled to the action range
    and the result clipped into the box. The noise restarts in the envs where s_t begins an episode (`episode_starts`:
    True there)."""
    actor, device = agent.actor, agent.actor.action_scale.device
    noise.reset(as_tensor(episode_starts, device))
    with torch.no_grad():
        actions = actor(as_tensor(obs, device)) + noise.sample() * actor.action_scale
        return actions.clamp_(actor.action_bias - actor.action_scale, actor.action_bias + actor.action_scale)


class Evaluation(NamedTuple):  # one value per evaluation episode in each, (episodes,)
    returns: np.ndarray  # sum_t r_t: the policy's score
    discounted_returns: np.ndarray  # sum_t gamma^(t-1) r_t: what the critic predicts at the start ...
    q_estimates: np.ndarray  # ... as Q(s_1, mu(s_1))


def evaluate(actor: Actor, critic: Critic, envs: list[gym.Env], gamma: float, device: torch.device) -> Evaluation:
    """One episode in each env of the deterministic policy mu(s), without noise, run side by side: one actor call per
    step for all episodes (episodes that ended are no longer stepped), one critic call on their first states.
    The critic's Q(s_1, mu(s_1)) estimates the discounted return. Well above it, it can be overestimation, to which
    DDPG's critic is prone: the actor climbs Q, so it favours actions whose value the critic got too high (Fujimoto et
    al. 2018; TD3 takes the min of two Qs); a critic still catching up with a changing policy, or a time limit's
    missing tail (below), are others (docs/critic.md)."""
    obs = np.stack([env.reset()[0] for env in envs])  # (episodes, obs_dim): s_1 of each episode
    returns, discounted, running = np.zeros(len(envs)), np.zeros(len(envs)), np.ones(len(envs), dtype=bool)
    q_estimates, discount = None, 1.0  # discount: gamma^(t-1) at step t of every running episode
    while running.any():
        with torch.no_grad():
            states = torch.as_tensor(obs, dtype=torch.float32, device=device)
            actions = actor(states)
            if q_estimates is None:  # t = 1
                q_estimates = critic(states, actions).cpu().numpy()
            actions = actions.cpu().numpy()
        for i in np.flatnonzero(running):
            obs[i], reward, terminated, truncated, _ = envs[i].step(actions[i])
            returns[i] += reward
            # A time limit that cuts the episode after step T leaves out the tail gamma^T Q(s_{T+1}, mu(s_{T+1})),
            # which the critic counts. It has the sign of the rewards to come: Pendulum-v1's are all <= 0, so there
            # an exact critic sits at or below the cut return, by at most 0.99^200 * 1630 = 218 (about 0 held
            # upright); on MuJoCo, 0.99^1000 = 4.3e-5 makes it vanish.
            discounted[i] += discount * reward
            running[i] = not (terminated or truncated)
        discount *= gamma
    return Evaluation(returns, discounted, q_estimates)


# ----------------------------------------------------------------------------------------------------------------
# Training


def initialise(args: Args, obs_dim: int, action_space: gym.spaces.Box, device: torch.device):
    """Alg. 1: initialise critic Q and actor mu, the targets Q' <- Q and mu' <- mu, and the replay buffer R; with
    them, the training envs and the exploration noise. Returns (envs, agent, rb, noise)."""
    act_dim = action_space.shape[0]
    envs = EnvRunner(args.env_id, args.num_envs, args.seed)
    agent = make_agent(obs_dim, action_space, args, device)
    return envs, agent, ReplayBuffer(args.buffer_size, obs_dim, act_dim, device), make_noise(args, act_dim, device)


def train(args: Args) -> dict:
    """Run DDPG as `args` say (or go on with the run `args.resume`); returns the run directory, the final evaluation's
    returns, the agent, the buffer, and the exit status (0; 128 + signal if interrupted; 1 if a value went NaN). A run
    that fails before its loop raises Stopped once it has said why (UsageError: `args` cannot be run)."""
    setup = checked(args)  # every check, the seeds, the device (below the divider); a resumed run's own args
    args = setup.args
    envs, agent, rb, noise = initialise(args, setup.obs_dim, setup.action_space, setup.device)
    fast = fast_path(agent, rb, noise, args, setup.device)  # None on the CPU; on a GPU, the loop's steps made fast
    # Its directory and logs, a resumed run's parts restored; `sync` stores the fast path's staged transitions in R
    run = Run(setup, envs, agent, rb, noise, sync=fast.flush if fast else None)
    loop(args, envs, agent, rb, noise, run, run.global_step, run.num_updates, fast)  # from 0, or where it stopped
    return {
        "run_dir": run.dir.path,
        "eval_returns": run.logs.eval_returns,
        "agent": agent,
        "replay_buffer": rb,
        "status": run.status,
    }


def loop(args: Args, envs: EnvRunner, agent, rb, noise, run, global_step: int, num_updates: int, fast=None) -> None:
    """Algorithm 1's loop from `global_step` on. `run` (below the divider) keeps the books at the end of each step
    (logs, evaluations, checkpoints, Ctrl-C, the console) and ends the run cleanly however the loop stops. On a GPU,
    `fast` (below the divider) does what `explore`, `update` and `rb.add` do, called with the same arguments, as CUDA
    graphs with one host-device copy each way per step."""
    select, learn, store = (explore, update, rb.add) if fast is None else (fast.explore, fast.update, fast.add)
    with run:
        learning, losses = global_step >= args.learning_starts, None
        while global_step < args.total_timesteps:
            # Alg. 1: select action a_t = mu(s_t) + noise_t; uniformly random actions until R holds learning_starts
            if learning:
                actions = select(agent, noise, envs.obs, envs.episode_lengths == 0).cpu().numpy()
            else:
                actions = envs.random_actions()

            # Alg. 1: sample a minibatch of N transitions from R; set y_i; update the critic, the actor and the
            # targets (`update`). One update per transition collected, made before the env step: it samples R
            # without transition t, and a GPU computes it while the CPU steps the envs.
            if learning:
                for _ in range(args.num_envs):
                    num_updates += 1
                    update_actor = num_updates % args.policy_frequency == 0  # the paper: at every update
                    losses = learn(agent, rb, args.batch_size, args.gamma, args.tau, update_actor)

            # Alg. 1: execute action a_t and observe reward r_t and new state s_{t+1}
            obs = envs.obs  # keep s_t: the env step replaces envs.obs (with a new episode's s_1 where one ended)
            next_obs, rewards, terminations, truncations, finished = envs.step(actions)
            global_step += args.num_envs

            # Alg. 1: store transition (s_t, a_t, r_t, s_{t+1}) in R. `terminations`, not `truncations`: a
            # time-limit cut is not terminal, and its target bootstraps from the true last observation next_obs.
            store(obs, actions, rewards, next_obs, terminations)
            learning = global_step >= args.learning_starts

            run.record(global_step, num_updates, finished, losses)  # logs, evaluation, checkpoint, Ctrl-C, console


# ================================================================================================================
# Engineering. DDPG is all above; what follows can be skipped on a first reading. It reads top to bottom: errors and
# exit statuses, the fast paths, the run directory, checkpoints and resume, logging, the checks of a command, the run
# itself (`Run`, what the loop talks to), and `main`.
# ================================================================================================================

LOG_INTERVAL = 100  # log losses and SPS every this many env steps (reading a loss is a host sync point)
LOSS_TAGS = {"critic": "losses/qf1_loss", "q_values": "losses/qf1_values", "actor": "losses/actor_loss"}  # CleanRL's
EVAL_Q_TAG, EVAL_DISCOUNTED_TAG = "eval/q_estimate", "eval/discounted_return"  # `Evaluation`'s means, beside the return
EVAL_CHART = "Q(s_1, mu(s_1)) and the discounted return at evaluations"  # both on one chart (TensorBoard's layout)
CUSTOM_SCALARS = {"critic": {EVAL_CHART: ["Multiline", [f"^{EVAL_Q_TAG}$", f"^{EVAL_DISCOUNTED_TAG}$"]]}}
PROGRESS_INTERVAL_S = 10.0  # print a progress line at most this often, in seconds
RECENT_EPISODES = 10  # the progress line shows the mean return of this many latest training episodes
CUDA_GRAPH_WARMUP = 3  # calls of a function run normally before it is recorded as a CUDA graph
SEED_LIMIT = 2**32  # seeds are below this (numpy's)
COPIES_PER_PARAMETER = 5  # in memory: a trained parameter, its target, its gradient and Adam's two moments
RUNS_DIR = "runs"  # where new runs make their directories, in the working directory
NAME_SEPARATOR = "__"  # between the fields of a run directory's name: ENV__EXP-NAME__SEED__TIME (`RunName`)
CHECKPOINT_FILE = "checkpoint.pt"  # in the run directory; rewritten in place, atomically
MODEL_FILE = "model.pt"  # in the run directory at the end: the actor, the critic and the arguments
CHECKPOINT_FORMAT = 1  # the layout of what checkpoint.pt and model.pt hold (`checkpoint_state`); others are refused
BESIDE = ".tmp"  # a file is written to its name with this suffix, then renamed into place
LOCK_FILE = "lock"  # in the run directory: locked by the one process that writes the run, and naming it
HOLDER_BYTES = 200  # the lock file names its holder: "process PID on HOST"
VIDEO_DIR = "videos"  # in the run directory, with --capture-video: mp4s of evaluation episodes
DISPLAYS = ("DISPLAY", "WAYLAND_DISPLAY")  # set where there is a display to draw on (X11, Wayland)
HEADLESS_MUJOCO_GL = "egl"  # MuJoCo's renderer where there is none: GLFW, its default, needs a display
MUJOCO_DEPRECATION = "is deprecated"  # in MuJoCo's warnings about what gymnasium's own models use (`quiet_mujoco`)
INSTALL_WANDB = "pip install -r requirements-track.txt"  # the pinned wandb that --track is tested with
WANDB_OFFLINE_MODES = ("offline", "disabled", "dryrun")  # values of WANDB_MODE that need no login
AGENT_PARTS = ("actor", "critic", "target_actor", "target_critic", "actor_optimizer", "critic_optimizer")  # saved
MODEL_PARTS = ("actor", "critic")  # what model.pt keeps of the agent
# Options of Args by what they concern. Every other option is a setting of the experiment: it shapes what a run learns
# or measures, so a resumed run keeps it, and a sweep never counts a run trained with another value as one of its own.
# MACHINE_OPTIONS concern only the machine and the records: a resumed run may change them, a sweep's runs may differ.
MACHINE_OPTIONS = tuple(
    "threads cuda cudagraphs compile torch_deterministic track wandb_project_name wandb_entity capture_video "
    "save_model checkpoint_frequency".split()
)
POSITIVE = (lambda value: 0 < value < math.inf, "positive and finite")
NUMBERS = {  # what each number of Args must be (`check_args`): a test of its value, and its words for a refusal
    **dict.fromkeys("total_timesteps buffer_size batch_size hidden_size policy_frequency".split(), POSITIVE),
    **dict.fromkeys("num_envs eval_frequency eval_episodes learning_rate threads".split(), POSITIVE),
    "tau": (lambda value: 0.0 < value <= 1.0, "in (0, 1]"),
    "gamma": (lambda value: 0.0 <= value <= 1.0, "in [0, 1]"),
    "exploration_noise": (lambda value: 0.0 <= value < math.inf, "non-negative and finite"),
    "checkpoint_frequency": (lambda value: value >= 0, "0 (off) or positive"),
}
COMMAND_OPTIONS = ("resume", "eval_checkpoint")  # what a command does with the runs, not how they learn
EXTENDING_OPTION = "total_timesteps"  # a setting that may grow: a run goes on past its end

# ----------------------------------------------------------------------------------------------------------------
# Errors: what stops a command or a run, and the exit status each ends with

EXIT_FAILED, EXIT_USAGE = 1, 2  # training failed (the last good checkpoint kept); a refused command
EXIT_IN_USE = os.EX_TEMPFAIL  # 75: a run directory is in use by another process; the same command may work later
EXIT_SIGNAL = 128  # interrupted by signal N (Ctrl-C, SIGTERM): its checkpoint written, exit status 128 + N
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # what stops a run after its step (`SignalFlag`)


class UsageError(Exception):
    """A mistake in the command line or in the environment chosen: reported as one line, no traceback."""


class RunInUse(UsageError):
    """The run directory is locked by another process (exit status EXIT_IN_USE: the same command may work later)."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: the run stops after writing its checkpoint."""


class Finished(Exception):
    """--resume of a run that has finished: nothing to train."""


class Stopped(Exception):
    """A run that failed before its loop began (opening its logs, restoring its checkpoint) and has said so."""

    status = property(lambda self: self.args[0])  # its exit status: Stopped(status)


def error_line(message: str) -> str:
    """The one line a refused command or a failed run ends with (on stderr)."""
    return f"ddpg.py: error: {message}"


def say(message: str | None, status: int, global_step: int) -> bool:
    """Print how a run ended: errors on stderr, in one line that names the step. False if there is nothing to say."""
    if message and status == EXIT_FAILED:
        print(error_line(f"step {global_step}: {message}"), file=sys.stderr, flush=True)
    elif message:
        print(message, flush=True)
    return message is not None


def shortage(error: OSError | torch.OutOfMemoryError, run_dir: str, device: torch.device | None) -> str:
    """What ran short: 'cannot write PATH: REASON' (RUN_DIR where TensorBoard names none) or 'DEVICE out of memory'."""
    if isinstance(error, OSError):
        return f"cannot write {error.filename or run_dir}: {error.strerror or error}"
    where = f"{device.type} out of memory" if device else "out of memory"
    return f"{where} ({'. '.join(str(error).splitlines()[0].split('. ')[:2]).rstrip('.')})"


# ----------------------------------------------------------------------------------------------------------------
# Fast paths: one host-device copy each way per env step, CUDA graphs, torch.compile


def uses_cuda_graphs(args: Args, device: torch.device) -> bool:
    return args.cudagraphs and device.type == "cuda"


def set_capturable(agent: Agent, capturable: bool) -> None:
    """Adam's `capturable` lets a CUDA graph record its step (the step count stays on the device); same maths."""
    for optimizer in (agent.actor_optimizer, agent.critic_optimizer):
        for group in optimizer.param_groups:
            group["capturable"] = capturable


class CudaGraph:
    """Calls `fn(**options)` through a CUDA graph per value of `options`, recorded once, replayed in one launch on the
    same memory (random draws fresh), after CUDA_GRAPH_WARMUP real calls on a side stream (Adam's moments, cuBLAS)."""

    def __init__(self, fn):
        self.fn, self.graphs, self.calls = fn, {}, collections.Counter()

    def __call__(self, **options):
        key = tuple(sorted(options.items()))
        if key not in self.graphs and self.calls[key] < CUDA_GRAPH_WARMUP:
            self.calls[key] += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*capturable=True")  # Adam: "not recorded this time"
                outputs = self.fn(**options)
            torch.cuda.current_stream().wait_stream(side)
            return outputs
        if key not in self.graphs:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self.fn(**options)
            self.graphs[key] = graph, outputs
        graph, outputs = self.graphs[key]
        graph.replay()
        return outputs


class FastPath:
    """On a GPU, what the loop's `explore`, `update` and `rb.add` do, with one copy each way per env step: `add` packs
    the transitions into pinned host memory; `explore` adds the observations, copies them over, and one CUDA graph
    (`store_and_select`) stores and selects; `learn(agent, rb, ...)` is another. The agent, buffer and noise are those
    it was made with (any the lesson's functions accept), not the arguments. On the CPU (tests), host is device."""

    def __init__(self, agent, rb, noise, args: Args, device: torch.device, learn=update):
        cuda, rows, obs_dim, act_dim = device.type == "cuda", args.num_envs, rb.obs.shape[-1], rb.actions.shape[-1]
        widths = (obs_dim, act_dim, 1, obs_dim, 1, 1, obs_dim)  # the staged columns: a Batch's, episode_starts, obs
        self.width = sum(widths[:5])  # a transition's
        self.host = torch.zeros((rows, sum(widths)), pin_memory=cuda)
        self.device_rows = self.host.to(device)  # the same tensor on the CPU
        obs, actions, rewards, next_obs, terminations, starts, act_on = self.device_rows.split(widths, dim=1)
        # Named views of the rows: the transitions for R, then what to act on next and where it begins an episode (1.0)
        self.transitions = Batch(obs, actions, rewards[:, 0], next_obs, terminations[:, 0])
        self.act_on, self.episode_starts, self.agent, self.rb, self.noise = act_on, starts[:, 0], agent, rb, noise
        self.host_actions = torch.zeros((rows, act_dim), pin_memory=cuda)
        self.sent, self.received = (torch.cuda.Event(), torch.cuda.Event()) if cuda else (None, None)
        self.unstored = False  # transitions staged that R does not hold yet
        self.learn = functools.partial(learn, agent, rb)
        self.device_step = self.store_and_select
        set_capturable(agent, uses_cuda_graphs(args, device))  # Adam's step recorded in a graph
        if uses_cuda_graphs(args, device):
            self.learn, self.device_step = CudaGraph(self.learn), CudaGraph(self.device_step)

    def store_and_select(self, store: bool, act: bool):
        """One call (a CUDA graph) between two env steps: store the staged transitions in R, then `explore`."""
        if store:
            self.rb.add(*self.transitions)
        return explore(self.agent, self.noise, self.act_on, self.episode_starts) if act else None

    def update(self, agent, rb, batch_size: int, gamma: float, tau: float, update_actor: bool) -> Losses:
        return self.learn(batch_size=batch_size, gamma=gamma, tau=tau, update_actor=update_actor)

    def add(self, *transition: np.ndarray) -> None:
        """Stage the step's transitions (obs, actions, rewards, next_obs, terminations, in the order of a Batch)."""
        self.flush()  # no action was selected since the last add (R is filling): those transitions go first
        self.pack(0, *transition)
        self.unstored = True

    def explore(self, agent, noise, obs: np.ndarray, episode_starts: np.ndarray) -> torch.Tensor:
        """The actions `explore` selects for `obs`, on the host (a host sync point on CUDA)."""
        self.pack(self.width, episode_starts, obs)
        self.send()
        self.host_actions.copy_(self.device_step(store=self.unstored, act=True), non_blocking=True)
        self.unstored = False
        if self.received is not None:
            self.received.record()
            self.received.synchronize()
        return self.host_actions.clone()  # the pinned memory is refilled at the next step

    def flush(self) -> None:
        """Store the staged transitions in R now, if it does not hold them yet (before a checkpoint, at the end)."""
        if self.unstored:
            self.send()
            self.device_step(store=True, act=False)
            self.unstored = False

    def pack(self, column: int, *fields: np.ndarray) -> None:
        """Write `fields` ((num_envs, d) or (num_envs,) arrays) side by side into the host rows, from `column` on."""
        if self.sent is not None:
            self.sent.synchronize()  # the previous copy has left the pinned rows before they are overwritten
        columns = [np.reshape(f, (len(f), -1)) for f in fields]
        end = column + sum(c.shape[1] for c in columns)
        np.concatenate(columns, axis=1, out=self.host.numpy()[:, column:end])

    def send(self) -> None:
        """Start copying the host rows to the device (nothing to do on the CPU, where they are the same)."""
        if self.sent is not None:
            self.device_rows.copy_(self.host, non_blocking=True)
            self.sent.record()


def fast_path(agent: Agent, rb: ReplayBuffer, noise, args: Args, device: torch.device) -> FastPath | None:
    """The loop's steps made fast: with --compile the four networks compiled in place (their parameters and state_dict
    stay the module's); on a GPU, a `FastPath` for the loop to call. None where it calls the lesson's own (CPU)."""
    for net in (agent.actor, agent.critic, agent.target_actor, agent.target_critic) if args.compile else ():
        net.compile(dynamic=False)
    return FastPath(agent, rb, noise, args, device) if device.type == "cuda" else None


# ----------------------------------------------------------------------------------------------------------------
# The run directory: its name, its lock (one writer), files written into it atomically


class RunName(NamedTuple):
    """The fields of a run directory's name, ENV__EXP-NAME__SEED__TIME: the env id ('/' as '_'), --exp-name, --seed
    and the start's unix time (with a suffix _N where two runs of one name started in the same second)."""

    env: str
    exp_name: str
    seed: int
    started: str = ""

    def __str__(self) -> str:  # without `started`: the prefix shared by the runs of one env, experiment and seed
        return NAME_SEPARATOR.join([self.env.replace("/", "_"), self.exp_name, str(self.seed), self.started])


def make_run_dir(args: Args) -> str:
    """runs/<env_id>__<exp_name>__<seed>__<unix_time>, with a suffix _N if two runs start in the same second."""
    base = os.path.join(RUNS_DIR, str(RunName(args.env_id, args.exp_name, args.seed, str(int(time.time())))))
    for run_dir in itertools.chain([base], (f"{base}_{n}" for n in itertools.count(2))):
        with contextlib.suppress(FileExistsError):
            os.makedirs(run_dir)  # fails if it exists, even when another process made it a moment ago
            return run_dir


def check_writable(directory: str) -> None:
    """The run will write in `directory` (made if missing): refuse a file in its place, or a place it cannot write."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"{directory}: not a directory, but training writes its runs there")
    existing = directory if os.path.isdir(directory) else os.path.dirname(os.path.abspath(directory))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{os.path.abspath(existing)}: this process cannot write there (permissions, read-only)")


def lock_run_dir(run_dir: str) -> int:
    """Lock the run directory (one writer) until its returned descriptor closes or the process ends, even by SIGKILL."""
    fd = os.open(os.path.join(run_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, HOLDER_BYTES).decode().strip() or "another process"
        os.close(fd)
        raise RunInUse(f"{run_dir} is in use by {holder}; one process writes a run at a time") from None
    except OSError as e:  # ENOLCK, EOPNOTSUPP: some network and FUSE file systems
        os.close(fd)
        raise UsageError(f"{run_dir}: its file system refuses flock locks ({e.strerror})") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
    except OSError:
        os.close(fd)
        raise
    return fd


def save_atomic(obj: dict, path: str) -> None:
    """torch.save to `path` + BESIDE, on disk (fsync) before it is renamed over `path`: a crash or a full disk leaves
    the previous `path` and no partial file. A failed write raises its OSError (which torch wraps in a RuntimeError)."""
    tmp = path + BESIDE
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        cause = e
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__context__
        if cause is None or cause is e:
            raise
        raise OSError(cause.errno, cause.strerror, tmp) from None


def file_identity(path: str) -> tuple[int, int]:
    """Which file is at `path` (inode and modification time): a checkpoint replaced by rename is another file."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns


class RunDir:
    """A run's directory, made (a new run) or found (--resume), locked (one writer) and released (`close`): a new run
    that did not start leaves none. A checkpoint replaced since it was read (`checkpoint`): in use, refused."""

    def __init__(self, args: Args, checkpoint: dict | None):
        self.new = not args.resume
        self.path = make_run_dir(args) if self.new else args.resume[0]
        self.checkpoint = os.path.join(self.path, CHECKPOINT_FILE)
        self.model = os.path.join(self.path, MODEL_FILE)
        self.videos = os.path.join(self.path, VIDEO_DIR)
        self.lock = None
        try:
            self.lock = lock_run_dir(self.path)
            if checkpoint and file_identity(self.checkpoint) != checkpoint["read"]:  # its process went on, then ended
                raise RunInUse(
                    f"{self.path} was in use: its process wrote a checkpoint while this one started; "
                    "run the command again"
                )
        except BaseException:
            self.close(started=False)
            raise

    def close(self, started: bool) -> None:
        """Let go of the lock (the run may be resumed, in this process too); a new run that never started is removed."""
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None
        if self.new and not started:
            shutil.rmtree(self.path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: what a run's checkpoint holds, written and read back here (`checkpoint_state`, `restore`); resume


def envs_state(envs: EnvRunner) -> dict:
    """What replays the training envs (`load_envs_state`): their episodes' starts, actions, returns, lengths and obs."""
    return {
        "episode_returns": envs.episode_returns.tolist(),
        "start_rng": list(envs.start_rng),
        "episode_lengths": envs.episode_lengths.tolist(),
        "obs": torch.as_tensor(envs.obs),
        "episode_actions": [torch.as_tensor(np.array(a, dtype=np.float32)) for a in envs.episode_actions],
    }


def load_envs_state(envs: EnvRunner, state: dict) -> None:
    """Rewind each env's generator to its episode's start, reset, and replay the episode's actions."""
    for env, rng in zip(envs.envs.envs, state["start_rng"]):
        env.np_random.bit_generator.state = rng
    envs.obs = envs.reset(np.ones(len(envs.seeds), dtype=bool))
    for i, (env, actions) in enumerate(zip(envs.envs.envs, state["episode_actions"])):
        for action in actions.numpy():
            envs.obs[i], *_ = env.step(action)
            envs.episode_actions[i].append(action)
    if not np.array_equal(envs.obs, state["obs"].numpy()):
        print("warning: the environment did not replay to the saved state (is it deterministic?)")
    envs.episode_returns[:] = state["episode_returns"]
    envs.episode_lengths[:] = state["episode_lengths"]


def rng_states(runner: EnvRunner, eval_envs: list[gym.Env]) -> dict:
    """Every random number generator the run draws from (numpy arrays as lists: weights_only refuses them)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "action_space": runner.envs.action_space.np_random.bit_generator.state,
        "eval_envs": [env.np_random.bit_generator.state for env in eval_envs],
    }


def set_rng_states(states: dict, runner: EnvRunner, eval_envs: list[gym.Env]) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    runner.envs.action_space.np_random.bit_generator.state = states["action_space"]
    for env, state in zip(eval_envs, states["eval_envs"]):
        env.np_random.bit_generator.state = state


def space_signature(obs_dim: int, action_space: gym.spaces.Box) -> dict:
    """What a checkpoint's networks were built for; another environment with other spaces is refused."""
    return {"obs_dim": obs_dim, "action_low": action_space.low.tolist(), "action_high": action_space.high.tolist()}


def agent_state(agent: Agent, parts: tuple[str, ...] = AGENT_PARTS) -> dict:
    """The state of `parts` of the agent (all six: the four networks and the two optimisers)."""
    return {name: getattr(agent, name).state_dict() for name in parts}


def buffer_state(rb: ReplayBuffer) -> dict:
    """The filled rows only, by column: an early checkpoint is small (any object with a ReplayBuffer's fields)."""
    size = int(rb.size)  # clone: torch.save writes a view's whole storage, the empty rows too
    return {"pos": int(rb.pos), "size": size, **{name: getattr(rb, name)[:size].clone() for name in Batch._fields}}


def load_buffer_state(rb: ReplayBuffer, state: dict) -> None:
    rb.pos.fill_(state["pos"])
    rb.size.fill_(state["size"])
    for name in Batch._fields:
        getattr(rb, name)[: state["size"]] = state[name]


def model_state(args: Args, spaces: dict, agent: dict) -> dict:
    """What model.pt holds and a checkpoint begins with: the layout, the arguments, the spaces and `agent`'s states."""
    return {"format": CHECKPOINT_FORMAT, "args": dataclasses.asdict(args), "spaces": spaces, "agent": agent}


def write_model(path: str, args: Args, spaces: dict, agent: dict) -> None:
    """Write model.pt (`agent`: the actor's and the critic's state), what a finished run leaves."""
    save_atomic(model_state(args, spaces, {name: agent[name] for name in MODEL_PARTS}), path)


def checkpoint_state(run: "Run") -> dict:
    """What checkpoint.pt holds: all a run needs to go on exactly (`restore` reads it; it ignores other entries)."""
    logs = run.logs
    return model_state(run.args, run.spaces, agent_state(run.agent)) | {
        "global_step": run.global_step,
        "num_updates": run.num_updates,
        "replay_buffer": buffer_state(run.rb),
        "noise": {"state": run.noise.state.clone()} if isinstance(run.noise, OUNoise) else {},
        "envs": envs_state(run.envs),
        "rng": rng_states(run.envs, run.eval_envs),
        "recent_returns": logs.recent_returns,
        "eval_returns": None if logs.eval_returns is None else logs.eval_returns.tolist(),
        "wandb_run_id": logs.wandb.id if logs.wandb else None,
    }


def restore(run: "Run", checkpoint: dict) -> None:
    """Put a run back as `checkpoint_state` saved it (its counters and W&B run were read when the run was made)."""
    for name in AGENT_PARTS:
        getattr(run.agent, name).load_state_dict(checkpoint["agent"][name])
    set_capturable(run.agent, uses_cuda_graphs(run.args, run.device))  # this machine's, not the saved one
    load_buffer_state(run.rb, checkpoint["replay_buffer"])
    if "state" in checkpoint["noise"]:
        run.noise.state.copy_(checkpoint["noise"]["state"])
    load_envs_state(run.envs, checkpoint["envs"])
    set_rng_states(checkpoint["rng"], run.envs, run.eval_envs)
    run.logs.recent_returns = checkpoint["recent_returns"]
    run.logs.eval_returns = None if checkpoint["eval_returns"] is None else np.array(checkpoint["eval_returns"])


def load_checkpoint(path: str) -> tuple[dict, Args]:
    """Read a checkpoint or saved model and its arguments, refusing files that are damaged or not ours in one line."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        # Its layout first. Unnumbered: format 1 for model.pt and checkpoints with the entry below; older ones, 0.
        layout = checkpoint.get("format", 1 if "population" in checkpoint or "global_step" not in checkpoint else 0)
        if layout == CHECKPOINT_FORMAT:
            saved = saved_args(checkpoint["args"])  # the saved arguments must still be ours
            if "spaces" not in checkpoint or not set(MODEL_PARTS) <= checkpoint["agent"].keys():
                raise KeyError("spaces, agent.actor or agent.critic")
    except Exception as e:  # a damaged file can fail in many ways (zip, pickle, missing keys): all are refused
        reason = (str(e).splitlines() or [""])[0]
        raise UsageError(f"{path}: not a readable ddpg.py checkpoint ({type(e).__name__}: {reason})") from None
    if layout != CHECKPOINT_FORMAT:
        earlier = f"an earlier ddpg.py, which this one ({CHECKPOINT_FORMAT}) does not read; go on with that ddpg.py"
        raise UsageError(f"{path}: written in checkpoint format {layout} by {earlier}")
    return checkpoint, saved


def saved_args(values: dict) -> Args:
    """Saved arguments as Args, without the options an earlier ddpg.py had that are now another program's, nor a None
    it saved where Args now has a value (its default --threads)."""
    foreign = {k for k in values if f"--{k.replace('_', '-')}" in FOREIGN_OPTIONS}
    unset = {k for k, v in values.items() if v is None and getattr(Args, k, None) is not None}  # then: the default
    return Args(**{k: v for k, v in values.items() if k not in foreign | unset})


def saved(path: str, key: str):
    """One entry of a checkpoint or model.pt, read without loading its tensors; None if missing, damaged or not ours."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)[key]
    except Exception:
        return None


def saved_file(path: str) -> str:
    """The file to evaluate: `path` itself, or a run directory's model.pt (else its checkpoint.pt)."""
    if os.path.isdir(path):
        for name in (MODEL_FILE, CHECKPOINT_FILE):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise UsageError(f"--eval-checkpoint {path}: no {MODEL_FILE} or {CHECKPOINT_FILE} in that directory")
    if not os.path.isfile(path):
        raise UsageError(f"--eval-checkpoint {path}: no such file or directory")
    return path


def saved_networks(checkpoint: dict, saved: Args, path: str, obs_dim: int, action_space: gym.spaces.Box) -> tuple:
    """The checkpoint's actor and critic (on the CPU), refusing in one line weights saved for other spaces or sizes."""
    if (spaces := space_signature(obs_dim, action_space)) != checkpoint["spaces"]:
        raise UsageError(f"{path}: saved for spaces {checkpoint['spaces']}, but {saved.env_id} now has {spaces}")
    nets = Actor(obs_dim, action_space, saved.hidden_size), Critic(obs_dim, action_space.shape[0], saved.hidden_size)
    for net_name, net in zip(MODEL_PARTS, nets):
        for name, tensor in net.state_dict().items():
            if checkpoint["agent"][net_name].get(name, torch.empty(0)).shape != tensor.shape:
                raise UsageError(f"{path}: {net_name} weights do not fit networks of --hidden-size {saved.hidden_size}")
        net.load_state_dict(checkpoint["agent"][net_name])
    return nets


def resume_point(args: Args, resume: str) -> tuple[Args, dict]:
    """The arguments and checkpoint the run `resume` goes on with (Finished: nothing to train; UsageError: refused)."""
    path, model_path = os.path.join(resume, CHECKPOINT_FILE), os.path.join(resume, MODEL_FILE)
    if not os.path.isfile(path) and os.path.isfile(model_path):
        ended_at = (saved(model_path, "args") or {}).get(EXTENDING_OPTION, math.inf)
        if EXTENDING_OPTION in asked_options(args) and args.total_timesteps > ended_at:
            why = f"no {CHECKPOINT_FILE} to go on from (trained with --checkpoint-frequency 0): it cannot be extended"
            raise UsageError(f"--resume {resume}: it holds {MODEL_FILE} but {why}")
        raise Finished(f"{resume} has finished (it holds {MODEL_FILE}): nothing to train")
    if not os.path.isfile(path):
        started = os.path.isfile(os.path.join(resume, LOCK_FILE))  # every run locks its directory first
        why = ": its run stopped before its first checkpoint, so there is nothing to resume; start it again"
        raise UsageError(f"--resume {resume}: no {CHECKPOINT_FILE} in that directory" + (why if started else ""))
    read = file_identity(path)  # to be sure, under the run's lock, that no other process replaced it since
    checkpoint, saved_args = load_checkpoint(path)
    checkpoint["read"] = read
    if "global_step" not in checkpoint:
        raise UsageError(f"{path}: a saved model, not a checkpoint: it has nothing to resume from")
    args = resumed_args(saved_args, args, resume)
    if checkpoint["global_step"] >= args.total_timesteps:
        if os.path.isfile(model_path):
            raise Finished(f"{resume} has finished (it holds {MODEL_FILE}): nothing to train")
        if saved_args.save_model:  # the run stopped between its last checkpoint and its model.pt: write that now
            check_writable(resume)
            lock = lock_run_dir(resume)  # not while the run's own process may still be writing it
            try:
                write_model(model_path, saved_args, checkpoint["spaces"], checkpoint["agent"])
            finally:
                os.close(lock)
        reached = f"step {checkpoint['global_step']}/{saved_args.total_timesteps}"
        raise Finished(f"{resume} has finished ({reached}): nothing to train")
    return args, checkpoint


def run_directory(resume: str) -> str:
    """The run directory that --resume names: itself, or its checkpoint file's directory; another file is refused."""
    if not os.path.isfile(resume):
        return resume
    if os.path.basename(resume) != CHECKPOINT_FILE:
        raise UsageError(f"--resume {resume}: a file; give the run directory (the one that holds {CHECKPOINT_FILE})")
    return os.path.dirname(resume) or os.curdir


def resumed_args(saved_args: Args, args: Args, resume: str) -> Args:
    """A resumed run's arguments: its saved ones, with those `args` asks for (`asked_options`) of the machine and the
    records, a larger --total-timesteps, and this process's --threads; another value of any other option is refused."""
    changes = {}
    for name, value in asked_options(args).items():
        if conflicting(name, getattr(saved_args, name), value):
            option, was = f"--{name.replace('_', '-')}", getattr(saved_args, name)
            if name == EXTENDING_OPTION:
                raise UsageError(
                    f"--resume {resume}: {option} {value} is below the run's own {was}: a run can be "
                    "extended, not shortened"
                )
            raise UsageError(
                f"--resume {resume}: {option} {value}: the run was trained with {was}, and a resumed "
                "run keeps its settings (only options of the machine and the records may change, and "
                "--total-timesteps grow); start a new run to change it"
            )
        changes[name] = value
    return dataclasses.replace(saved_args, **{**changes, "resume": (resume,), "threads": args.threads})


def conflicting(name: str, saved_value, value) -> bool:
    """Whether `value` of option `name` is another experiment than `saved_value` (a larger --total-timesteps is not)."""
    if value == saved_value or name in MACHINE_OPTIONS + COMMAND_OPTIONS:
        return False
    return not (name == EXTENDING_OPTION and value > saved_value)


TYPED = contextvars.ContextVar("TYPED", default=None)  # the Args fields typed on ddpg.py's command line (`main`)


def typed_options(argv: list[str]) -> frozenset[str]:
    """The Args fields a command line names, as tyro reads them: --name, --name=value or --no-name, with '-' or '_'."""
    names = {field.name for field in dataclasses.fields(Args)}
    typed = {token[2:].split("=", 1)[0].replace("-", "_") for token in argv if token.startswith("--")}
    return frozenset({name if name in names else name.removeprefix("no_") for name in typed} & names)


def asked_options(args: Args) -> dict:
    """What `args` asks of a resumed run: the options typed on the command line, else (`train`) those off Args()."""
    typed, defaults = TYPED.get(), Args()
    names = [field.name for field in dataclasses.fields(Args) if field.name not in COMMAND_OPTIONS]
    return {
        name: getattr(args, name)
        for name in names
        if (name in typed if typed is not None else getattr(args, name) != getattr(defaults, name))
    }


# ----------------------------------------------------------------------------------------------------------------
# Logging: TensorBoard, Weights & Biases (--track, an optional dependency imported only here) and the console


@functools.cache  # once per process, however many runs it trains
def check_wandb() -> None:
    """For --track only (a run without it never imports wandb): wandb is installed and, unless offline, logged in."""
    try:
        import wandb
    except ImportError:
        raise UsageError(f"--track needs wandb, which is not installed: {INSTALL_WANDB}") from None
    if os.environ.get("WANDB_MODE") not in WANDB_OFFLINE_MODES:
        try:
            wandb.login(verify=False)  # asks for a key on a terminal; elsewhere raises if there is none
        except wandb.errors.UsageError as e:
            raise UsageError(f"--track: {e} Or run offline: WANDB_MODE=offline") from None


def write_video(env: gym.wrappers.RecordVideo) -> None:
    """Write the episode's mp4 now (not at the next reset); a failed write leaves no file, and its OSError names it."""
    path = os.path.join(env.video_folder, f"{env._video_name}.mp4")
    try:
        env.stop_recording()
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(path)
        code = re.search(r"error code: -(\d+)", str(e))
        raise OSError(
            int(code[1]) if code else e.errno, os.strerror(int(code[1])) if code else str(e).splitlines()[0], path
        ) from None


def quiet_writer_thread(hook: threading.ExceptHookArgs) -> None:
    """No traceback for TensorBoard's writer thread's failed write (a full disk): the run reports it, in one line."""
    if not (issubclass(hook.exc_type, OSError) and type(hook.thread).__name__ == "_AsyncWriterThread"):
        threading.__excepthook__(hook)


def every(interval: int, global_step: int, num_envs: int) -> bool:
    """True at the first step on or after each multiple of `interval` (global_step grows by num_envs at a time)."""
    return global_step % interval < num_envs


class Logs:
    """Where a run's numbers go: TensorBoard in the run directory (a resumed run's drops what a crashed process logged
    after `global_step`), a progress line at most every PROGRESS_INTERVAL_S, and with --track a W&B run (`wandb`) named
    as the run directory, with all Args, the videos and every scalar (the env step as `global_step`, the x-axis). A
    resumed run goes on in its W&B run (`wandb_run_id`); runs sharing a process are W&B runs of their own in `group`
    (where None, wandb reads WANDB_RUN_GROUP). It keeps what the console shows, which a checkpoint saves."""

    def __init__(self, args: Args, run_dir: str, global_step: int, wandb_run_id: str | None, group: str | None):
        self.args, self.recent_returns, self.eval_returns, self.actor_loss = args, [], None, None
        self.writer, self.wandb, self.video_dir = None, None, os.path.join(run_dir, VIDEO_DIR)
        self.start(global_step)
        try:
            if args.track:
                import wandb  # here, not at the top of the file: only --track needs it

                self.sent = set(self.videos())  # a resumed run's earlier videos were sent by the process that made them
                where = dict(project=args.wandb_project_name, entity=args.wandb_entity, group=group, resume="allow")
                what = dict(name=os.path.basename(run_dir), config=dataclasses.asdict(args), save_code=True)
                self.wandb = wandb.init(**where, **what, id=wandb_run_id, reinit="create_new")
                self.wandb.define_metric("*", step_metric="global_step")
            self.writer = SummaryWriter(run_dir, purge_step=global_step + 1 if global_step else None)
            if not global_step:
                table = "".join(f"\n|{key}|{value}|" for key, value in dataclasses.asdict(args).items())
                self.writer.add_text("hyperparameters", "|param|value|\n|-|-|" + table)
            self.writer.add_custom_scalars(CUSTOM_SCALARS)  # by every process: a run resumed from an older ddpg.py
            threading.excepthook = quiet_writer_thread
        except BaseException:
            self.close(global_step, EXIT_FAILED)
            raise

    def start(self, global_step: int) -> None:
        """Count the speed (SPS) and the time left from here."""
        self.start_step, self.start_time = global_step, time.time()
        self.last_print = self.start_time

    def scalar(self, tag: str, value: float, global_step: int) -> None:
        """A scalar, to TensorBoard (and with --track to W&B), at an env step."""
        self.writer.add_scalar(tag, value, global_step)
        if self.wandb:
            self.wandb.log({tag: float(value), "global_step": global_step})

    def episodes(self, finished: list[tuple[float, int]], global_step: int) -> None:
        """The episodes that ended at this step: (return, length) each."""
        for episode_return, episode_length in finished:
            self.recent_returns = (self.recent_returns + [float(episode_return)])[-RECENT_EPISODES:]
            self.scalar("charts/episodic_return", episode_return, global_step)
            self.scalar("charts/episodic_length", episode_length, global_step)

    def losses(self, losses: Losses | None, global_step: int) -> None:
        """The losses (the actor's last) and SPS every LOG_INTERVAL steps; NotFinite for NaN. None: no update yet."""
        self.actor_loss = self.actor_loss if losses is None or losses.actor is None else losses.actor
        if losses is None or not every(LOG_INTERVAL, global_step, self.args.num_envs):
            return
        for name, tensor in losses._replace(actor=self.actor_loss)._asdict().items():
            if tensor is None:  # no actor step yet
                continue
            value = tensor.item()  # host sync point, once per LOG_INTERVAL steps
            if not math.isfinite(value):
                raise NotFinite(LOSS_TAGS[name])
            self.scalar(LOSS_TAGS[name], value, global_step)
        self.scalar("charts/SPS", int(self.sps(global_step)), global_step)

    def evaluation(self, evaluation: Evaluation, global_step: int, eval_envs: list[gym.Env]) -> None:
        self.eval_returns = evaluation.returns
        for env in eval_envs:
            if isinstance(env, gym.wrappers.RecordVideo) and env.recording:
                write_video(env)
        self.scalar("eval/episodic_return", evaluation.returns.mean(), global_step)
        self.scalar(EVAL_DISCOUNTED_TAG, evaluation.discounted_returns.mean(), global_step)
        self.scalar(EVAL_Q_TAG, evaluation.q_estimates.mean(), global_step)
        if self.wandb:
            self.send_videos(global_step)

    def videos(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.video_dir, "*.mp4")))

    def send_videos(self, global_step: int) -> None:
        """Log each mp4 finished since the last call to W&B (wandb's own `monitor_gym` fails on gymnasium >= 1.0)."""
        import wandb  # imported already (`__init__`, with --track)

        for path in self.videos():
            if path not in self.sent:
                self.wandb.log({"videos/eval": wandb.Video(path, format="mp4"), "global_step": global_step})
                self.sent.add(path)

    def sps(self, global_step: int) -> float:
        return (global_step - self.start_step) / max(time.time() - self.start_time, 1e-9)

    def progress(self, global_step: int, done: bool, label: str = "") -> None:
        """The console's progress line, after `label` (e.g. "seed 4 | ")."""
        now = time.time()
        if now - self.last_print < PROGRESS_INTERVAL_S and not done:
            return
        self.last_print, sps, total = now, self.sps(global_step), self.args.total_timesteps
        recent = f"{np.mean(self.recent_returns):.1f}" if self.recent_returns else "-"
        last_eval = f"{self.eval_returns.mean():.1f}" if self.eval_returns is not None else "-"
        elapsed = datetime.timedelta(seconds=int(now - self.start_time))
        left = datetime.timedelta(seconds=int((total - global_step) / max(sps, 1e-9)))
        line = f"step {global_step}/{total} | SPS {sps:.0f} | return {recent} | eval {last_eval} | elapsed {elapsed}"
        print(f"{label}{line} | left {left}", flush=True)

    def final(self) -> str:
        r = self.eval_returns
        return f"final evaluation: {r.mean():.1f} +- {r.std():.1f} over {len(r)} episodes"

    def close(self, global_step: int, status: int | None) -> None:
        """Flush and close TensorBoard's file; send the last videos and close the W&B run with the exit status."""
        if self.writer is not None:
            with contextlib.suppress(OSError):  # a disk that filled up has been reported already
                self.writer.close()
        if self.wandb:
            self.send_videos(global_step)
            self.wandb.finish(exit_code=status)


# ----------------------------------------------------------------------------------------------------------------
# Checks of a command, before any environment or run directory exists; the machine


def check_seed(seed: int, option: str = "--seed") -> None:
    if not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"{option} must be in [0, 2^32), got {seed}")


def check_exp_name(exp_name: str) -> None:
    if not exp_name:
        raise UsageError("--exp-name must not be empty (it is part of the run directory's name)")
    if "/" in exp_name or NAME_SEPARATOR in exp_name:
        name = NAME_SEPARATOR.join(["ENV", "EXP-NAME", "SEED", "TIME"])
        raise UsageError(f"--exp-name {exp_name}: no '/' or '{NAME_SEPARATOR}' (run directories are {name})")


def find_cpp_compiler() -> str | None:
    """The C++ compiler torch.compile would build its kernels with, if there is one on PATH."""
    return shutil.which("g++") or shutil.which("clang++")


def check_args(args: Args) -> None:
    """Every impossible number is refused here, before any environment or run directory exists."""
    for name, (valid, what) in NUMBERS.items():
        if not valid(getattr(args, name)):
            raise UsageError(f"--{name.replace('_', '-')} must be {what}, got {getattr(args, name)}")
    check_seed(args.seed)
    check_exp_name(args.exp_name)
    if args.batch_size > args.buffer_size:
        raise UsageError(f"--batch-size ({args.batch_size}) must not exceed --buffer-size ({args.buffer_size})")
    if args.batch_size > args.learning_starts:
        raise UsageError(
            f"--batch-size ({args.batch_size}) must not exceed --learning-starts "
            f"({args.learning_starts}): the first update samples from that many transitions"
        )
    if args.learning_starts >= args.total_timesteps:
        raise UsageError(
            f"--learning-starts ({args.learning_starts}) must be below --total-timesteps ({args.total_timesteps})"
        )
    if args.compile and find_cpp_compiler() is None:
        raise UsageError("--compile needs a C++ compiler (g++ or clang++) on PATH to build its kernels; none found")
    if args.capture_video and importlib.util.find_spec("moviepy") is None:
        raise UsageError("--capture-video needs moviepy to write mp4 files: pip install moviepy==2.2.1")
    if args.eval_checkpoint:
        saved_file(args.eval_checkpoint)
    else:
        for directory in args.resume or (RUNS_DIR,):
            check_writable(directory)
    if args.track:
        check_wandb()


def check_env(env_id: str, video: bool = False) -> tuple[int, gym.spaces.Box]:
    """Check the env's id and spaces (flat Box observations, bounded Box actions), and with `video` that it renders."""
    if video and not any(os.environ.get(name) for name in DISPLAYS):  # no display: as `make_env` does for SDL, ...
        os.environ.setdefault("MUJOCO_GL", HEADLESS_MUJOCO_GL)  # ... before mujoco is first imported, which reads it
    try:
        quiet_mujoco(env_id)
        with warnings.catch_warnings():  # an out-of-date id's warning comes when the run makes its envs, not twice
            warnings.simplefilter("ignore", DeprecationWarning)
            env = make_env(env_id)
    except (gym.error.Error, ImportError) as e:  # ImportError: a missing module, or an id gymnasium retired
        raise UsageError(f"--env-id {env_id}: {str(e).splitlines()[0]}") from None
    except RuntimeError as e:  # mujoco refuses, when first imported, a MUJOCO_GL it does not know
        if "MUJOCO_GL" not in str(e):
            raise
        raise UsageError(f"{str(e).splitlines()[0]} (MuJoCo draws with egl, osmesa or glfw)") from None
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise UsageError(f"--env-id {env_id}: observation space must be a flat Box, got {obs_space}")
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        raise UsageError(f"--env-id {env_id}: action space must be a continuous 1-D Box, got {act_space}")
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise UsageError(f"--env-id {env_id}: action bounds must be finite, got {act_space}")
    if video:
        check_rendering(env_id)
    return obs_space.shape[0], act_space


def quiet_mujoco(env_id: str) -> None:
    """MuJoCo's warnings to `mujoco_warning`, not the console and ./MUJOCO_LOG.TXT (MuJoCo envs, before any model)."""
    spec = gym.envs.registry.get(env_id)  # None for an id that gym.make registers ("module:Env-v0") or refuses
    if spec is None or "mujoco" not in str(spec.entry_point):
        return
    import mujoco

    mujoco.set_mju_user_warning(mujoco_warning)


def mujoco_warning(message: str) -> None:
    """A MuJoCo warning on stderr, in one line, but for the deprecations of gymnasium's models (a dozen lines a run)."""
    if MUJOCO_DEPRECATION not in message:
        print(f"MuJoCo warning: {message}", file=sys.stderr, flush=True)


def check_rendering(env_id: str) -> None:
    """For --capture-video: draw a frame now: an env that cannot render here is refused before any run starts."""
    env = make_env(env_id, render=True)
    try:
        with warnings.catch_warnings():  # GLFW's warnings without a display: the error says it in one line
            warnings.simplefilter("ignore")
            env.reset(seed=0)
            env.render()
    except Exception as e:  # whatever fails, no video can be made here
        renderer = os.environ.get("MUJOCO_GL", "unset")
        raise UsageError(
            f"--capture-video: {env_id} cannot draw a frame here ({type(e).__name__}: {str(e).splitlines()[0]}); "
            f"MUJOCO_GL is {renderer}: MuJoCo draws with egl or osmesa without a display, glfw with one"
        ) from None
    finally:
        env.close()


def use_machine(args: Args) -> torch.device:
    """Set torch's CPU threads; the training device (the GPU if asked for and there is one)."""
    torch.set_num_threads(args.threads)
    if args.cuda and not torch.cuda.is_available():
        print("no CUDA device available: running on the CPU")
    return torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")


def check_memory(args: Args, obs_dim: int, action_space: gym.spaces.Box, device: torch.device) -> None:
    """Refuse a replay buffer or networks larger than the device's memory (measured on the meta device: no memory)."""
    act_dim = action_space.shape[0]
    with torch.device("meta"):
        row = ReplayBuffer(1, obs_dim, act_dim, torch.device("meta"))
        nets = [Actor(obs_dim, action_space, args.hidden_size), Critic(obs_dim, act_dim, args.hidden_size)]
    where, have = "this machine", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if device.type == "cuda":
        where, have = "the GPU", torch.cuda.mem_get_info(device)[1]
    row_bytes = sum(getattr(row, name).nbytes for name in Batch._fields)
    net_bytes = COPIES_PER_PARAMETER * sum(p.nbytes for net in nets for p in net.parameters())
    for option, need in {"--buffer-size": args.buffer_size * row_bytes, "--hidden-size": net_bytes}.items():
        if need > have:
            value, gib = getattr(args, option[2:].replace("-", "_")), 2**30
            raise UsageError(f"{option} {value}: needs {need / gib:.1f} GiB, more than {where}'s {have / gib:.1f} GiB")


class Setup(NamedTuple):
    """A checked command's run, before anything of it exists: what `initialise` and `Run` are made from."""

    args: Args  # a resumed run's: its saved ones, with the changes asked for
    checkpoint: dict | None  # a resumed run's, else None
    device: torch.device
    obs_dim: int
    action_space: gym.spaces.Box


def checked(args: Args) -> Setup:
    """Check everything, before any environment or run directory exists; seed python, numpy and torch; set the threads;
    pick the device. A resumed run goes on with its saved arguments and the changes asked for (`resumed_args`)."""
    if args.resume is not None and len(args.resume) != 1:
        several = "several run directories together are a population's: python population.py --resume DIR ..."
        raise UsageError(
            f"--resume needs one run directory ({several})" if args.resume else "--resume needs a run directory"
        )
    (resume,) = args.resume or (None,)
    checkpoint = None
    if resume:
        args, checkpoint = resume_point(args, resume)
    check_args(args)  # a resumed run's saved options must suit this machine too
    obs_dim, action_space = check_env(args.env_id, args.capture_video)
    if checkpoint:
        saved_networks(checkpoint, args, os.path.join(resume, CHECKPOINT_FILE), obs_dim, action_space)
    device = use_machine(args)
    check_memory(args, obs_dim, action_space, device)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    return Setup(args, checkpoint, device, obs_dim, action_space)


# ----------------------------------------------------------------------------------------------------------------
# The run: what the loop talks to


class SignalFlag:
    """Ctrl-C (SIGINT) and SIGTERM only raise a flag: the loop finishes its step, checkpoints and stops; a second one
    stops at once (the last checkpoint intact). Runs sharing one flag act on one reading of it per step (`read`)."""

    def __init__(self):
        self.signum, self.step, self.seen = None, None, None
        self.previous = {sig: signal.signal(sig, self.handle) for sig in STOPPING_SIGNALS}

    def handle(self, signum, frame) -> None:
        self.signum = signum
        self.restore()

    def read(self, global_step: int) -> int | None:
        """The signal to act on at this step: read at its first call, the same for every later call at this step."""
        if global_step != self.step:
            self.step, self.seen = global_step, self.signum
        return self.seen

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    @staticmethod
    @contextlib.contextmanager
    def deferred():
        """Ctrl-C and SIGTERM arriving in the block (renames in a row, never to be cut between two) act after it."""
        arrived = []
        previous = {sig: signal.signal(sig, lambda signum, frame: arrived.append(signum)) for sig in STOPPING_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for signum in arrived:
                signal.raise_signal(signum)


class Run(contextlib.AbstractContextManager):
    """A training run around the loop: its directory, logs, evaluations, checkpoints and Ctrl-C. Made from a `Setup`,
    the parts `initialise` made (a resumed run's restored here) and `sync()` (called before it reads its agent or
    buffer: a FastPath's `flush`). The loop calls `record` each step; `with run:` ends it (`end`), as one failing to
    open ends before raising Stopped. Runs side by side in one process pass what differs: `signals` (one SignalFlag),
    `label` (of its console lines), `group` (W&B's), `save(run)` (a due checkpoint), `together()` (the directories)."""

    def __init__(
        self, setup, envs, agent, rb, noise, sync=None, signals=None, label="", group=None, save=None, together=None
    ):
        args, checkpoint = setup.args, setup.checkpoint or {}
        self.args, self.device, self.envs, self.agent, self.rb, self.noise = args, setup.device, envs, agent, rb, noise
        self.sync = sync or (lambda: None)  # R holds every transition once it is called
        self.save = save or (lambda run: run.write_checkpoint(run.dir.checkpoint))  # alone: in place, atomically
        self.label = label
        self.spaces = space_signature(setup.obs_dim, setup.action_space)
        self.global_step, self.num_updates = checkpoint.get("global_step", 0), checkpoint.get("num_updates", 0)
        self.status, self.started, self.logs, self.signals, self.eval_envs = None, False, None, None, []
        try:
            self.dir = RunDir(args, setup.checkpoint)
        except BaseException:  # in use, or not writable: nothing of the run was opened but its envs
            envs.close()
            raise
        self.together = together or (lambda: [self.dir.path])
        try:
            self.signals = signals or SignalFlag()
            videos, prefix = int(args.capture_video), f"eval-resumed-{self.global_step}" if checkpoint else "eval"
            self.eval_envs = make_eval_envs(args.env_id, args.eval_episodes, args.seed, videos, self.dir.videos, prefix)
            self.logs = Logs(args, self.dir.path, self.global_step, checkpoint.get("wandb_run_id"), group)
            if checkpoint:
                restore(self, checkpoint)
                print(f"resuming {self.dir.path} at step {self.global_step}/{args.total_timesteps}")
            self.started = True
            self.logs.start(self.global_step)
        except BaseException as error:
            if not say(self.end(type(error), error), self.status, self.global_step):
                raise
            raise Stopped(self.status) from error

    def record(self, global_step: int, num_updates: int, finished: list, losses: Losses | None) -> None:
        """The end of an env step: logs, evaluation and checkpoint when due, Ctrl-C (after the checkpoint), progress."""
        self.global_step, self.num_updates, args = global_step, num_updates, self.args
        done = global_step >= args.total_timesteps
        self.logs.episodes(finished, global_step)
        self.logs.losses(losses, global_step)
        if every(args.eval_frequency, global_step, args.num_envs) or done:
            self.sync()
            self.check_finite()  # an actor that an update broke is neither evaluated nor, at the end, saved
            evaluation = evaluate(self.agent.actor, self.agent.critic, self.eval_envs, args.gamma, self.device)
            self.logs.evaluation(evaluation, global_step, self.eval_envs)
        interrupted = self.signals.read(global_step)  # a signal arriving after this is handled at the next step
        due = args.checkpoint_frequency and (every(args.checkpoint_frequency, global_step, args.num_envs) or done)
        if interrupted or due:
            self.save(self)
        if interrupted and not done:
            raise Interrupted
        self.logs.progress(global_step, done, self.label)

    def check_finite(self) -> None:
        """Raise NotFinite naming the first parameter that is not finite: a broken agent never replaces a good one."""
        for name, p in [*self.agent.actor.named_parameters("actor"), *self.agent.critic.named_parameters("critic")]:
            if not torch.isfinite(p).all():  # a host sync point
                raise NotFinite(f"parameter {name}")

    def write_checkpoint(self, path: str, **extra) -> None:
        """Write `checkpoint_state` and `extra` entries to `path`, atomically; NotFinite if the agent broke."""
        self.sync()  # R holds this step's transitions
        self.check_finite()
        self.logs.writer.flush()  # and the logs on disk reach this step: a resumed run logs only what comes after it
        save_atomic(checkpoint_state(self) | extra, path)

    def __exit__(self, kind, error, traceback) -> bool:
        return say(self.end(kind, error), self.status, self.global_step)

    def end(self, kind, error) -> str | None:
        """End the run (done: model saved; stopped; failed): set its exit status; what to say (None: a bug)."""
        message, self.status = None, EXIT_FAILED
        if kind is None:
            try:
                self.sync()  # R holds the last transitions
                if self.args.save_model:
                    write_model(self.dir.model, self.args, self.spaces, agent_state(self.agent, MODEL_PARTS))
                    print(f"model saved to {self.dir.model}")
                message, self.status = self.label + self.logs.final(), 0
            except OSError as e:
                kind, error = OSError, e
        stopped = f"training stopped ({self.kept()})"
        if kind is NotFinite:
            message = f"{error} is not finite; {stopped}"
        elif kind is not None and issubclass(kind, (OSError, torch.OutOfMemoryError)):
            message = f"{shortage(error, self.dir.path, self.device)}; {stopped}"
        elif kind is Interrupted:
            self.status = EXIT_SIGNAL + self.signals.seen
            dirs, name, path = self.together(), signal.Signals(self.signals.seen).name, self.dir.checkpoint
            saved = f"checkpoints saved in {', '.join(dirs)}" if len(dirs) > 1 else f"checkpoint saved to {path}"
            message = f"{name} at step {self.global_step}: {saved}\nresume with: {self.resume_command()}"
        elif kind is not None:  # the environment's error, or a bug: its traceback, then how to go on
            note = error_line(f"step {self.global_step}: {stopped}")
            if note not in getattr(error, "__notes__", []):  # once, where several runs end on one error
                error.add_note(note)
        self.close()
        return message

    def abandon(self) -> None:
        """Close a run that opened but will not start (one beside it could not open): a new one leaves no directory."""
        self.started, self.status = False, EXIT_FAILED
        self.close()

    def kept(self) -> str:  # what a stopped run leaves to go on from
        if not os.path.exists(self.dir.checkpoint):
            return "no checkpoint"
        last = f"the last good checkpoint is {self.dir.checkpoint}"
        last = "each run's last good checkpoint is kept" if len(self.together()) > 1 else last
        return f"{last}; resume with: {self.resume_command()}"

    def resume_command(self) -> str:
        return f"python {sys.argv[0]} --resume {' '.join(self.together())}"

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a disk that filled up has been reported already
            for env in [*self.eval_envs, self.envs]:
                env.close()
        if self.logs is not None:
            self.logs.close(self.global_step, self.status)
        if self.signals is not None:
            self.signals.restore()
        self.dir.close(self.started)


# ----------------------------------------------------------------------------------------------------------------
# Evaluating a saved agent, and the command line


def evaluate_checkpoint(args: Args) -> Evaluation:
    """Print the returns of `args.eval_episodes` deterministic episodes of a saved actor (all recorded with
    `capture_video`), and its critic's estimate of them beside their discounted return (at the run's gamma)."""
    path = saved_file(args.eval_checkpoint)
    checkpoint, saved = load_checkpoint(path)
    obs_dim, action_space = check_env(saved.env_id, args.capture_video)
    nets = saved_networks(checkpoint, saved, path, obs_dim, action_space)
    device = use_machine(args)
    actor, critic = (net.to(device) for net in nets)
    video_dir = os.path.join(os.path.dirname(os.path.abspath(path)), VIDEO_DIR)
    videos = args.eval_episodes if args.capture_video else 0
    prefix = f"checkpoint-eval-{int(time.time())}"  # an evaluation's videos apart from any earlier one's
    envs = make_eval_envs(saved.env_id, args.eval_episodes, args.seed, videos, video_dir, prefix)
    evaluation = evaluate(actor, critic, envs, saved.gamma, device)
    for env in envs:
        env.close()
    r = evaluation.returns
    spread = f"{r.mean():.1f} +- {r.std():.1f} over {len(r)} episodes (min {r.min():.1f}, max {r.max():.1f})"
    print(f"{saved.env_id}: {spread}")
    q, discounted = evaluation.q_estimates.mean(), evaluation.discounted_returns.mean()
    print(f"critic's estimate Q(s_1, mu(s_1)) {q:.1f}, discounted return {discounted:.1f} (gamma {saved.gamma})")
    return evaluation


HUB = f"CleanRL's upload to the Hugging Face Hub is not part of ddpg.py; the run directory's {MODEL_FILE} is the agent"
FOREIGN_OPTIONS = {  # options of other programs, which tyro would refuse in a box that does not say why
    **dict.fromkeys(("--upload-model", "--no-upload-model", "--hf-entity"), HUB),
    "--seeds": "many seeds in one process: python population.py --seeds ... (beside ddpg.py, with ddpg.py's options)",
}


def foreign_option(argv: list[str]) -> str | None:
    """'OPTION: why' for the first option of FOREIGN_OPTIONS in `argv`, in any spelling tyro takes (`_`, `--a=b`)."""
    typed = {arg.split("=")[0]: arg.split("=")[0].replace("_", "-") for arg in argv}
    return next(
        (f"{arg}: {FOREIGN_OPTIONS[option]}" for arg, option in typed.items() if option in FOREIGN_OPTIONS), None
    )


def command(action, argv: list[str]) -> int:
    """ddpg.py's options read from `argv`, then `action(args)` (its exit status), ended as a command ends: a refusal,
    or a failure before a run opened its directory, in one line (exit 2, 75 or 1); a finished run's message (0)."""
    typed = TYPED.set(typed_options(argv))  # what a --resume asks of the run (`asked_options`)
    try:
        if refused := foreign_option(argv):
            raise UsageError(refused)
        return action(tyro.cli(Args, args=argv))
    except UsageError as e:
        print(error_line(str(e)), file=sys.stderr)
        return EXIT_IN_USE if isinstance(e, RunInUse) else EXIT_USAGE
    except Finished as e:
        print(e)
        return 0
    except Stopped as e:  # it said why
        return e.status
    except (OSError, torch.OutOfMemoryError) as e:  # before the run opened its directory, or while it did
        print(error_line(shortage(e, RUNS_DIR, None)), file=sys.stderr)
        return EXIT_FAILED
    finally:
        TYPED.reset(typed)


def run_or_evaluate(args: Args) -> int:
    """What `python ddpg.py` does: train a run (or go on with one), or evaluate a saved agent (--eval-checkpoint)."""
    if args.resume:  # a run's checkpoint file stands for its run directory
        args = dataclasses.replace(args, resume=tuple(map(run_directory, args.resume)))
    if not args.eval_checkpoint:
        return train(args)["status"]
    check_args(args)
    evaluate_checkpoint(args)
    return 0


def main() -> int:
    return command(run_or_evaluate, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
