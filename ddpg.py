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

Beyond Algorithm 1, a run can be stopped and resumed with the same result: `EnvRunner` and the checkpoint
functions keep every state the loop depends on, and Ctrl-C writes a checkpoint before exiting. `--compile` and
`--cudagraphs` run the same update and policy step with fewer kernel launches (`step_functions`).
`--track` mirrors the run to Weights & Biases (`Tracking`).

Run `python ddpg.py --help` for the options; `tensorboard --logdir runs` to watch training.
"""

import collections
import dataclasses
import functools
import glob
import math
import os
import random
import shutil
import signal
import sys
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
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment, part of the run directory's name"""
    seed: int = 1
    """seed of python, numpy, torch and the environments"""
    torch_deterministic: bool = True
    """make cuDNN deterministic (`torch.backends.cudnn.deterministic`); CPU runs are deterministic anyway"""
    cuda: bool = True
    """train on the GPU when one is available (falls back to the CPU otherwise)"""
    compile: bool = False
    """compile the four networks with torch.compile: fused kernels, fewer launches (README: measured speeds)"""
    cudagraphs: bool = False
    """on CUDA, record the update and the policy step once as CUDA graphs and replay them (one launch each)"""
    threads: int | None = None
    """CPU threads torch uses (default: min(4, available cores); more is slower for networks this small)"""
    track: bool = False
    """mirror the run to Weights & Biases: arguments, every TensorBoard scalar, evaluation videos (needs wandb)"""
    wandb_project_name: str = "ddpg.py"
    """W&B project; not CleanRL's `cleanRL`, as our defaults differ (noise, sizes): name that one to compare"""
    wandb_entity: str | None = None
    """W&B team or user to log to (none: your own default entity)"""
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
    hidden_size: int = 64
    """width of the two hidden layers of the actor and of the critic (MuJoCo baselines use 256)"""
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
    checkpoint_frequency: int = 50_000
    """write a checkpoint to resume from every this many environment steps (0: only when interrupted)"""
    resume: str | None = None
    """run directory to go on with, from its checkpoint and with its saved arguments"""
    eval_checkpoint: str | None = None
    """instead of training, evaluate the actor of this checkpoint or saved model for --eval-episodes episodes"""


# Named constants of the algorithm and of the logging.
OU_THETA = 0.15  # mean-reversion rate of the Ornstein-Uhlenbeck noise (the paper's value)
FINAL_LAYER_INIT = 3e-3  # output layers start uniform in [-3e-3, 3e-3], so first Q values and actions are ~0
EVAL_SEED_OFFSET = 10_000  # the evaluation env is seeded apart from the training envs
LOG_INTERVAL = 100  # log losses and SPS every this many env steps (reading a loss is a host sync point)
PROGRESS_INTERVAL_S = 10.0  # print a progress line at most this often, in seconds
RECENT_EPISODES = 10  # the progress line shows the mean return of this many latest training episodes
CUDA_GRAPH_WARMUP = 3  # calls of a function run normally before it is recorded as a CUDA graph
MAX_DEFAULT_THREADS = 4  # measured on 16 cores: 4 threads ran HalfCheetah 3x faster than 16 (README: speed)
CHECKPOINT_FILE = "checkpoint.pt"  # in the run directory; rewritten in place, atomically
MODEL_FILE = "model.pt"  # in the run directory, with --save-model: the actor, the critic and the arguments
VIDEO_DIR = "videos"  # in the run directory, with --capture-video: mp4s of evaluation episodes
INSTALL_WANDB = "pip install -r requirements-track.txt"  # the pinned wandb that --track is tested with
WANDB_OFFLINE_MODES = ("offline", "disabled", "dryrun")  # values of WANDB_MODE that need no login


class UsageError(Exception):
    """A mistake in the command line or in the environment chosen: reported as one line, no traceback."""


# ----------------------------------------------------------------------------------------------------------------
# Environments


def make_env(env_id: str, render: bool = False) -> gym.Env:
    """One environment; `render` makes it produce rgb frames for video."""
    return gym.make(env_id, render_mode="rgb_array") if render else gym.make(env_id)


def seed_env(env: gym.Env, seed: int) -> None:
    """Seed the env's generator as `env.reset(seed=seed)` would, without starting an episode."""
    env.np_random, _ = gym.utils.seeding.np_random(seed)


def check_spaces(env: gym.Env) -> None:
    """DDPG needs a flat continuous observation and a bounded continuous action."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise UsageError(f"--env-id {env.spec.id}: observation space must be a flat Box, got {obs_space}")
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        raise UsageError(f"--env-id {env.spec.id}: action space must be a continuous 1-D Box, got {act_space}")
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise UsageError(f"--env-id {env.spec.id}: action bounds must be finite, got {act_space}")


class EnvRunner:
    """The training envs, stepped together (a gymnasium vector env), and what it takes to put them back exactly.

    Finished envs are reset by `step` itself, *after* it has read their true last observation. (gymnasium's
    default autoreset would instead hand back the next episode's first observation in its place: storing that as
    s_{t+1} teaches the critic a jump that never happens.)

    For checkpoints it keeps, per env, the running episode's return and length, the state of the env's random
    number generator just before the reset that began the episode, and the actions taken since. Simulators are
    deterministic given these, so replaying them restores an env mid-episode (`load_state_dict`).
    """

    def __init__(self, env_id: str, num_envs: int, seed: int):
        self.envs = gym.vector.SyncVectorEnv(
            [lambda: make_env(env_id) for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.DISABLED
        )
        for i, env in enumerate(self.envs.envs):
            seed_env(env, seed + i)
        self.episode_returns = np.zeros(num_envs)
        self.episode_lengths = np.zeros(num_envs, dtype=np.int64)
        self.start_rng = [None] * num_envs  # filled by _reset
        self.episode_actions = [[] for _ in range(num_envs)]
        self.obs = self._reset(np.ones(num_envs, dtype=bool))  # (num_envs, obs_dim): what the agent acts on

    def _reset(self, mask: np.ndarray) -> np.ndarray:
        for i in np.flatnonzero(mask):
            self.start_rng[i] = self.envs.envs[i].np_random.bit_generator.state
            self.episode_actions[i] = []
        self.episode_returns[mask], self.episode_lengths[mask] = 0.0, 0
        obs, _ = self.envs.reset(options={"reset_mask": mask})
        return obs

    def step(self, actions: np.ndarray):
        """Returns (next_obs, rewards, terminations, truncations, finished episodes as [(return, length)]).

        `next_obs` is the true s_{t+1} of every env; `self.obs` becomes the observation to act on next, which is
        the first observation of a new episode where one ended.
        """
        next_obs, rewards, terminations, truncations, _ = self.envs.step(actions)
        for i, action in enumerate(actions):
            self.episode_actions[i].append(action)
        self.episode_returns += rewards
        self.episode_lengths += 1
        done = terminations | truncations
        finished = [(self.episode_returns[i], int(self.episode_lengths[i])) for i in np.flatnonzero(done)]
        self.obs = self._reset(done) if done.any() else next_obs
        return next_obs, rewards, terminations, truncations, finished

    def state_dict(self) -> dict:
        return {
            "episode_returns": self.episode_returns.tolist(),
            "episode_lengths": self.episode_lengths.tolist(),
            "start_rng": self.start_rng,
            "episode_actions": [torch.as_tensor(np.array(a, dtype=np.float32)) for a in self.episode_actions],
            "obs": torch.as_tensor(self.obs),
        }

    def load_state_dict(self, state: dict) -> None:
        """Rewind each env's generator to its episode's start, reset, and replay the episode's actions."""
        for env, rng in zip(self.envs.envs, state["start_rng"]):
            env.np_random.bit_generator.state = rng
        self.obs = self._reset(np.ones(self.envs.num_envs, dtype=bool))
        for i, (env, actions) in enumerate(zip(self.envs.envs, state["episode_actions"])):
            for action in actions.numpy():
                self.obs[i], *_ = env.step(action)
                self.episode_actions[i].append(action)
        if not np.array_equal(self.obs, state["obs"].numpy()):
            print("warning: the environment did not replay to the saved state (is it deterministic?)")
        self.episode_returns[:] = state["episode_returns"]
        self.episode_lengths[:] = state["episode_lengths"]

    def close(self) -> None:
        self.envs.close()


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
        n, device = len(rewards), self.storage.obs.device
        idx = (self.pos + torch.arange(n, device=device)) % self.capacity  # rows to write, wrapping around
        for store, value in zip(self.storage, (obs, actions, rewards, next_obs, terminations)):
            store[idx] = torch.as_tensor(value, dtype=torch.float32, device=device)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, self.size, (batch_size,), device=self.storage.obs.device)
        return Batch(*(store[idx] for store in self.storage))

    def state_dict(self) -> dict:
        """The filled rows only: a checkpoint early in a run stays small."""
        return {"pos": self.pos, "size": self.size, **{k: v[: self.size] for k, v in self.storage._asdict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.size = state["pos"], state["size"]
        for name, store in self.storage._asdict().items():
            store[: self.size] = state[name]


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

    def state_dict(self) -> dict:
        return {"state": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.state.copy_(state["state"])


class GaussianNoise:
    """Independent N(0, sigma^2) noise at every step (TD3, CleanRL)."""

    def __init__(self, num_envs: int, act_dim: int, sigma: float, device: torch.device):
        self.sigma = sigma
        self.eps = torch.empty((num_envs, act_dim), device=device)

    def sample(self) -> torch.Tensor:
        return self.eps.normal_(std=self.sigma)

    def reset(self, done: torch.Tensor) -> None:
        """Nothing to restart: the noise has no memory."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore."""


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

    def state_dict(self) -> dict:
        return {field.name: getattr(self, field.name).state_dict() for field in dataclasses.fields(self)}

    def load_state_dict(self, state: dict) -> None:
        for field in dataclasses.fields(self):
            getattr(self, field.name).load_state_dict(state[field.name])


def make_agent(obs_dim: int, action_space: gym.spaces.Box, args: Args, device: torch.device) -> Agent:
    """Alg. 1: initialise critic and actor randomly, and the targets as exact copies of them."""
    act_dim = action_space.shape[0]
    actor = Actor(obs_dim, action_space, args.hidden_size).to(device)
    critic = Critic(obs_dim, act_dim, args.hidden_size).to(device)
    target_actor = Actor(obs_dim, action_space, args.hidden_size).to(device)
    target_critic = Critic(obs_dim, act_dim, args.hidden_size).to(device)
    target_actor.load_state_dict(actor.state_dict())
    target_critic.load_state_dict(critic.state_dict())
    # fused=True: one kernel updates all parameters instead of several per tensor. capturable=True (for
    # --cudagraphs) lets a CUDA graph record the step; the fused kernel computes the same either way.
    adam = functools.partial(torch.optim.Adam, lr=args.learning_rate, fused=True, capturable=args.cudagraphs)
    actor_optimizer, critic_optimizer = adam(actor.parameters()), adam(critic.parameters())
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
# Fast paths (--compile, --cudagraphs): the same update and policy step, run with fewer kernel launches


class CudaGraph:
    """Calls `fn(inputs, **options)` through a CUDA graph: recorded once, then replayed with a single launch.

    A replay runs the recorded kernels on the recorded memory, so each call copies its `inputs` (a tensor, or a
    NamedTuple of tensors such as a Batch) into the recorded input tensors and returns the recorded outputs, refilled.
    A graph has no branches: one is recorded per value of `options` (e.g. `update_actor`). The first
    CUDA_GRAPH_WARMUP calls run `fn` normally, on a side stream as recording requires, so that what is made lazily
    (Adam's moments, cuBLAS workspaces) exists before recording; they are real calls, not rehearsals.
    """

    def __init__(self, fn):
        self.fn, self.graphs, self.calls = fn, {}, collections.Counter()

    def __call__(self, inputs, **options):
        key = tuple(sorted(options.items()))
        if key not in self.graphs and self.calls[key] < CUDA_GRAPH_WARMUP:
            self.calls[key] += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*capturable=True")  # Adam: "not recorded this time"
                outputs = self.fn(inputs, **options)
            torch.cuda.current_stream().wait_stream(side)
            return outputs
        if key not in self.graphs:
            recorded_inputs = inputs.clone() if torch.is_tensor(inputs) else type(inputs)(*map(torch.clone, inputs))
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self.fn(recorded_inputs, **options)
            self.graphs[key] = graph, recorded_inputs, outputs
        graph, recorded_inputs, outputs = self.graphs[key]
        for recorded, value in zip(as_tuple(recorded_inputs), as_tuple(inputs)):
            recorded.copy_(value)
        graph.replay()
        return outputs


def as_tuple(inputs: torch.Tensor | tuple) -> tuple:
    return (inputs,) if torch.is_tensor(inputs) else tuple(inputs)


def step_functions(agent: Agent, noise: OUNoise | GaussianNoise, args: Args):
    """The loop's `learn(data, update_actor=...)` (= `update`) and `act(obs)` (= `explore`), sped up as asked.

    --compile has torch.compile trace each network's forward (and so its backward) into fused kernels; the first
    calls compile, which takes seconds. --cudagraphs then removes the per-kernel launch cost that bounds small
    networks on a GPU. The maths is the same in all cases.
    """
    if args.compile:
        for net in (agent.actor, agent.critic, agent.target_actor, agent.target_critic):
            net.compile(dynamic=False)  # in place: parameters and state_dict stay those of the module
    learn = functools.partial(update, agent, gamma=args.gamma, tau=args.tau)
    act = functools.partial(explore, agent.actor, noise=noise)
    return (CudaGraph(learn), CudaGraph(act)) if args.cudagraphs else (learn, act)


# ----------------------------------------------------------------------------------------------------------------
# Experiment tracking (--track): the run mirrored to Weights & Biases, an optional dependency imported only here


class Tracking:
    """A W&B run that follows the run directory: its name, all Args as config, the scalars and the videos.

    `sync_tensorboard` makes W&B read the TensorBoard events this process writes: every scalar arrives under its own
    tag, with the env step as `global_step`, which is made the charts' x-axis. A resumed run passes the checkpoint's
    W&B run id and so goes on in the same W&B run; wandb syncs only the event files created since its run started,
    so the resumed process sends its own, which starts after the checkpoint, and no step is sent twice.
    wandb itself reads WANDB_MODE (offline), WANDB_DIR and WANDB_RUN_GROUP.
    """

    def __init__(self, args: Args, run_dir: str, run_id: str | None):
        import wandb  # here, not at the top of the file: only --track needs it

        self.wandb = wandb
        # the run directory as TensorBoard's root: tags keep their names, and wandb need not wait to guess the root
        wandb.tensorboard.unpatch()  # from a previous run tracked in this process, if any
        wandb.tensorboard.patch(root_logdir=run_dir)
        self.run = wandb.init(
            project=args.wandb_project_name, entity=args.wandb_entity, name=os.path.basename(run_dir),
            id=run_id, resume="allow", config=dataclasses.asdict(args), sync_tensorboard=True, save_code=True,
        )  # fmt: skip
        self.run.define_metric("*", step_metric="global_step")
        self.video_dir = os.path.join(run_dir, VIDEO_DIR)
        self.sent = set(self.videos())  # a resumed run's earlier videos were sent by the process that made them

    def videos(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.video_dir, "*.mp4")))

    def send_videos(self, global_step: int) -> None:
        """Log each mp4 finished since the last call (wandb's own `monitor_gym` fails on gymnasium >= 1.0)."""
        for path in self.videos():
            if path not in self.sent:
                self.run.log({"videos/eval": self.wandb.Video(path, format="mp4"), "global_step": global_step})
                self.sent.add(path)

    def finish(self, global_step: int, status: int) -> None:
        """Send the last videos and close the W&B run with the process's exit status."""
        self.send_videos(global_step)
        self.run.finish(exit_code=status)


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


# ----------------------------------------------------------------------------------------------------------------
# Checks of the command line and of the environment


def check_args(args: Args) -> None:
    """Every impossible number is refused here, before any environment or run directory exists."""
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be positive, got {args.threads}")
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
    if args.checkpoint_frequency < 0:
        raise UsageError(f"--checkpoint-frequency must be 0 (off) or positive, got {args.checkpoint_frequency}")
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
    if args.cudagraphs and not (args.cuda and torch.cuda.is_available()):
        raise UsageError("--cudagraphs needs a CUDA GPU (and --cuda); none is available")
    if args.compile and find_cpp_compiler() is None:
        raise UsageError("--compile needs a C++ compiler (g++ or clang++) on PATH to build its kernels; none found")
    if args.resume and not os.path.isfile(os.path.join(args.resume, CHECKPOINT_FILE)):
        raise UsageError(f"--resume {args.resume}: no {CHECKPOINT_FILE} in that directory")
    if args.eval_checkpoint and not os.path.isfile(args.eval_checkpoint):
        raise UsageError(f"--eval-checkpoint {args.eval_checkpoint}: no such file")
    if args.track:
        check_wandb()


def num_threads(args: Args) -> int:
    """--threads, or min(MAX_DEFAULT_THREADS, the cores this process may run on)."""
    return args.threads or min(MAX_DEFAULT_THREADS, len(os.sched_getaffinity(0)))


def find_cpp_compiler() -> str | None:
    """The C++ compiler torch.compile would build its kernels with, if there is one on PATH."""
    return shutil.which("g++") or shutil.which("clang++")


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


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: everything a run needs to go on exactly where it stopped


def save_atomic(obj: dict, path: str) -> None:
    """torch.save to a temporary file, then rename it: a crash mid-write leaves the previous `path` intact."""
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)  # atomic on POSIX and Windows


def rng_states(runner: EnvRunner, eval_env: gym.Env) -> dict:
    """Every random number generator the run draws from (numpy arrays as lists: weights_only refuses them)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "action_space": runner.envs.action_space.np_random.bit_generator.state,
        "eval_env": eval_env.np_random.bit_generator.state,
    }


def set_rng_states(states: dict, runner: EnvRunner, eval_env: gym.Env) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    runner.envs.action_space.np_random.bit_generator.state = states["action_space"]
    eval_env.np_random.bit_generator.state = states["eval_env"]


def space_signature(obs_dim: int, action_space: gym.spaces.Box) -> dict:
    """What a checkpoint's networks were built for; another environment with other spaces is refused."""
    return {"obs_dim": obs_dim, "action_low": action_space.low.tolist(), "action_high": action_space.high.tolist()}


def load_checkpoint(path: str) -> tuple[dict, Args]:
    """Read a checkpoint or saved model and its arguments, refusing files that are damaged or not ours in one line."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        saved = Args(**checkpoint["args"])  # the saved arguments must still be ours
        if "spaces" not in checkpoint or "actor" not in checkpoint["agent"]:
            raise KeyError("spaces or agent.actor")
    except Exception as e:  # a damaged file can fail in many ways (zip, pickle, missing keys): all are refused
        reason = (str(e).splitlines() or [""])[0]
        raise UsageError(f"{path}: not a readable ddpg.py checkpoint ({type(e).__name__}: {reason})") from None
    return checkpoint, saved


def check_checkpoint_fits(
    checkpoint: dict, saved: Args, path: str, obs_dim: int, action_space: gym.spaces.Box
) -> None:
    if checkpoint["spaces"] != space_signature(obs_dim, action_space):
        raise UsageError(
            f"{path}: saved for spaces {checkpoint['spaces']}, but {saved.env_id} now has "
            f"{space_signature(obs_dim, action_space)}"
        )
    for name, tensor in Actor(obs_dim, action_space, saved.hidden_size).state_dict().items():
        if checkpoint["agent"]["actor"].get(name, torch.empty(0)).shape != tensor.shape:
            raise UsageError(f"{path}: actor weights do not fit networks of --hidden-size {saved.hidden_size}")


def first_nonfinite(agent: Agent) -> str | None:
    """Name of the first network parameter holding a NaN or an infinity, if any (a host sync point)."""
    for net_name in ("actor", "critic"):
        for name, p in getattr(agent, net_name).named_parameters():
            if not torch.isfinite(p).all():
                return f"{net_name}.{name}"
    return None


class SignalFlag:
    """Ctrl-C (SIGINT) and SIGTERM only raise a flag: the loop finishes its step, checkpoints and stops.

    A second signal gets the usual behaviour (a second Ctrl-C stops at once; the last checkpoint stays intact).
    """

    def __init__(self):
        self.signum = None
        self.previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(self, signum, frame) -> None:
        self.signum = signum
        self.restore()

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------------------------------------------
# Run directory and console


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


def every(interval: int, global_step: int, num_envs: int) -> bool:
    """True at the first step on or after each multiple of `interval` (global_step grows by num_envs at a time)."""
    return global_step % interval < num_envs


def format_seconds(seconds: float) -> str:
    """h:mm:ss, hours not wrapping at a day."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ----------------------------------------------------------------------------------------------------------------
# Training


def train(args: Args) -> dict:
    """Run DDPG as `args` says (or go on with the run `args.resume`).

    Returns the run directory, the final evaluation's returns, the agent, the replay buffer, and the exit status
    (0; 128 + the signal number when interrupted; 1 when a loss or parameter went non-finite).
    """
    check_args(args)
    checkpoint = None
    if args.resume:
        resume_path = os.path.join(args.resume, CHECKPOINT_FILE)
        checkpoint, saved = load_checkpoint(resume_path)
        # the run's own options, except the thread count, which belongs to this machine
        args = dataclasses.replace(saved, resume=args.resume, threads=args.threads)
        check_args(args)  # the saved options must suit this machine too (--cudagraphs needs a GPU)
    obs_dim, action_space = check_env(args.env_id)
    if checkpoint:
        check_checkpoint_fits(checkpoint, args, resume_path, obs_dim, action_space)
    act_dim = action_space.shape[0]

    torch.set_num_threads(num_threads(args))
    use_cuda = args.cuda and torch.cuda.is_available()
    if args.cuda and not use_cuda:
        print("no CUDA device available: training on the CPU")
    device = torch.device("cuda" if use_cuda else "cpu")

    run_dir = args.resume or make_run_dir(args)
    checkpoint_path = os.path.join(run_dir, CHECKPOINT_FILE)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    runner = EnvRunner(args.env_id, args.num_envs, args.seed)
    runner.envs.action_space.seed(args.seed)
    eval_env = make_env(args.env_id, render=args.capture_video)
    if args.capture_video:  # the first episode of every evaluation
        prefix = f"eval-resumed-{checkpoint['global_step']}" if checkpoint else "eval"
        eval_env = gym.wrappers.RecordVideo(eval_env, os.path.join(run_dir, VIDEO_DIR), name_prefix=prefix,
                                           episode_trigger=lambda ep: ep % args.eval_episodes == 0)  # fmt: skip
    seed_env(eval_env, args.seed + EVAL_SEED_OFFSET)

    # Alg. 1: initialise critic, actor, their targets, and the replay buffer R
    agent = make_agent(obs_dim, action_space, args, device)
    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    noise = make_noise(args, act_dim, device)
    learn, act = step_functions(agent, noise, args)
    global_step, num_updates = 0, 0  # env steps summed over envs; gradient updates
    recent_returns, eval_returns = [], None
    if checkpoint:
        agent.load_state_dict(checkpoint["agent"])
        rb.load_state_dict(checkpoint["replay_buffer"])
        noise.load_state_dict(checkpoint["noise"])
        runner.load_state_dict(checkpoint["envs"])
        set_rng_states(checkpoint["rng"], runner, eval_env)
        global_step, num_updates = checkpoint["global_step"], checkpoint["num_updates"]
        recent_returns = checkpoint["recent_returns"]
        eval_returns = None if checkpoint["eval_returns"] is None else np.array(checkpoint["eval_returns"])
        print(f"resuming {run_dir} at step {global_step}/{args.total_timesteps}")

    # before the SummaryWriter: W&B hooks TensorBoard's event writer to sync the scalars it writes
    tracking = Tracking(args, run_dir, checkpoint.get("wandb_run_id") if checkpoint else None) if args.track else None
    # purge_step hides events a crashed process logged after the checkpoint, so no step appears twice
    writer = SummaryWriter(run_dir, purge_step=global_step + 1 if checkpoint else None)
    if not checkpoint:
        writer.add_text("hyperparameters", hyperparameter_table(args))

    def save_checkpoint() -> None:
        save_atomic(
            {
                "args": dataclasses.asdict(args), "spaces": space_signature(obs_dim, action_space),
                "global_step": global_step, "num_updates": num_updates, "agent": agent.state_dict(),
                "replay_buffer": rb.state_dict(), "noise": noise.state_dict(), "envs": runner.state_dict(),
                "rng": rng_states(runner, eval_env), "recent_returns": recent_returns,
                "eval_returns": None if eval_returns is None else eval_returns.tolist(),
                "wandb_run_id": tracking.run.id if tracking else None,
            },
            checkpoint_path,
        )  # fmt: skip

    def stop(message: str, status: int, stream=sys.stdout) -> dict:
        writer.close()
        runner.close()
        eval_env.close()  # writes the video of an evaluation's last episode still being recorded
        if tracking:
            tracking.finish(global_step, status)
        signals.restore()
        print(message, file=stream, flush=True)
        return {"run_dir": run_dir, "eval_returns": eval_returns, "agent": agent, "replay_buffer": rb,
                "status": status}  # fmt: skip

    def not_finite(quantity: str) -> dict:
        kept = f"the last good checkpoint is {checkpoint_path}" if os.path.exists(checkpoint_path) else "no checkpoint"
        return stop(f"ddpg.py: error: step {global_step}: {quantity} is not finite; training stopped ({kept})", 1,
                    sys.stderr)  # fmt: skip

    signals = SignalFlag()
    start_time = last_print = time.time()
    start_step, last_pi_loss = global_step, None
    while global_step < args.total_timesteps:
        obs = runner.obs
        # Alg. 1: select action a_t = mu(s_t) + N_t (uniformly random actions while the buffer fills)
        if global_step < args.learning_starts:
            actions = runner.envs.action_space.sample()
        else:
            obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
            actions = act(obs_tensor).cpu().numpy()  # host sync point: the env needs the action
            if not np.isfinite(actions).all():  # the earliest sign of a diverged actor, at no extra sync
                return not_finite("the actor's action")

        # Alg. 1: execute action a_t and observe reward r_t and new state s_{t+1}
        next_obs, rewards, terminations, truncations, finished = runner.step(actions)
        global_step += args.num_envs
        for episode_return, episode_length in finished:
            recent_returns = (recent_returns + [float(episode_return)])[-RECENT_EPISODES:]
            writer.add_scalar("charts/episodic_return", episode_return, global_step)
            writer.add_scalar("charts/episodic_length", episode_length, global_step)

        # Alg. 1: store transition (s_t, a_t, r_t, s_{t+1}) in R. `terminations`, not `truncations`: a time-limit
        # cut is not a terminal state, and its target will bootstrap from the true last observation next_obs.
        rb.add(obs, actions, rewards, next_obs, terminations)
        if finished:  # restart the noise of the envs whose episode ended
            noise.reset(torch.as_tensor(terminations | truncations, device=device))

        if global_step >= args.learning_starts:
            # One gradient step per transition collected, as in Alg. 1, whatever the number of envs.
            for _ in range(args.num_envs):
                # Alg. 1: sample a random minibatch of N transitions from R
                data = rb.sample(args.batch_size)
                num_updates += 1
                qf_loss, qf_values, pi_loss = learn(data, update_actor=num_updates % args.policy_frequency == 0)
                last_pi_loss = last_pi_loss if pi_loss is None else pi_loss
            if every(LOG_INTERVAL, global_step, args.num_envs):
                losses = {"losses/qf_loss": qf_loss, "losses/qf_values": qf_values, "losses/actor_loss": last_pi_loss}
                for tag, value in losses.items():
                    if value is None:
                        continue
                    value = value.item()  # host sync point, once per LOG_INTERVAL steps
                    if not math.isfinite(value):
                        return not_finite(tag)
                    writer.add_scalar(tag, value, global_step)
                writer.add_scalar("charts/SPS", int((global_step - start_step) / (time.time() - start_time)),
                                  global_step)  # fmt: skip

        if every(args.eval_frequency, global_step, args.num_envs) or global_step >= args.total_timesteps:
            eval_returns = evaluate(agent.actor, eval_env, args.eval_episodes, device)
            writer.add_scalar("eval/episodic_return", eval_returns.mean(), global_step)
            if tracking:
                tracking.send_videos(global_step)

        periodic = args.checkpoint_frequency and every(args.checkpoint_frequency, global_step, args.num_envs)
        if periodic or signals.signum:
            bad = first_nonfinite(agent)
            if bad:  # never overwrite a good checkpoint with a broken agent
                return not_finite(f"parameter {bad}")
            save_checkpoint()
        if signals.signum:
            return stop(
                f"{signal.Signals(signals.signum).name} at step {global_step}: checkpoint saved to {checkpoint_path}\n"
                f"resume with: python {sys.argv[0]} --resume {run_dir}",
                128 + signals.signum,
            )

        now = time.time()
        if now - last_print >= PROGRESS_INTERVAL_S or global_step >= args.total_timesteps:
            last_print = now
            sps = (global_step - start_step) / (now - start_time)
            recent = f"{np.mean(recent_returns):.1f}" if recent_returns else "-"
            last_eval = f"{eval_returns.mean():.1f}" if eval_returns is not None else "-"
            print(
                f"step {global_step}/{args.total_timesteps} | SPS {sps:.0f} | return {recent} | eval {last_eval} "
                f"| elapsed {format_seconds(now - start_time)} "
                f"| left {format_seconds((args.total_timesteps - global_step) / sps)}",
                flush=True,
            )

    if args.save_model:
        model_path = os.path.join(run_dir, MODEL_FILE)
        save_atomic(
            {"args": dataclasses.asdict(args), "spaces": space_signature(obs_dim, action_space),
             "agent": {"actor": agent.actor.state_dict(), "critic": agent.critic.state_dict()}},
            model_path,
        )  # fmt: skip
        print(f"model saved to {model_path}")
    return stop(
        f"final evaluation: {eval_returns.mean():.1f} +- {eval_returns.std():.1f} over {len(eval_returns)} episodes", 0
    )


def evaluate_checkpoint(args: Args) -> np.ndarray:
    """Run `args.eval_episodes` deterministic episodes of a saved actor; with `capture_video`, record them all."""
    checkpoint, saved = load_checkpoint(args.eval_checkpoint)
    obs_dim, action_space = check_env(saved.env_id)
    check_checkpoint_fits(checkpoint, saved, args.eval_checkpoint, obs_dim, action_space)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    actor = Actor(obs_dim, action_space, saved.hidden_size).to(device)
    actor.load_state_dict(checkpoint["agent"]["actor"])
    env = make_env(saved.env_id, render=args.capture_video)
    if args.capture_video:
        video_dir = os.path.join(os.path.dirname(os.path.abspath(args.eval_checkpoint)), VIDEO_DIR)
        env = gym.wrappers.RecordVideo(env, video_dir, name_prefix="checkpoint-eval", episode_trigger=lambda ep: True)
    seed_env(env, args.seed + EVAL_SEED_OFFSET)
    returns = evaluate(actor, env, args.eval_episodes, device)
    env.close()
    print(f"{saved.env_id}: {returns.mean():.1f} +- {returns.std():.1f} over {len(returns)} episodes "
          f"(min {returns.min():.1f}, max {returns.max():.1f})")  # fmt: skip
    return returns


def main() -> int:
    args = tyro.cli(Args)
    try:
        if args.eval_checkpoint:
            check_args(args)
            evaluate_checkpoint(args)
            return 0
        return train(args)["status"]
    except UsageError as e:
        print(f"ddpg.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
