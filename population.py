"""Many seeds in one process: `python ddpg.py --seeds 1 2 3` trains one DDPG agent per seed, side by side and in step.

ddpg.py hands `--seeds` (and `--resume` of several run directories) to `train_population` here; this file builds on
ddpg.py and changes nothing in it. Each seed's envs, networks, optimisers, replay buffer, noise, evaluations and run
directory are its own, made as a single run with that --seed makes them, and each seed's directory is a single run's:
the same files, tags and checkpoints, which `--eval-checkpoint` reads as any other. The loop is the lesson's, over the
envs of all seeds one after another (`Population`). On a GPU one call updates all K agents and one stores and selects
for all (`BatchedSteps`): the kernels are K times wider, about as fast as one agent's. On a CPU each agent's own
lesson steps, one after another, are faster (`MemberSteps`). Minibatches and noise come from one generator, so a
seed here is not bit-identical to its single run; a population of one seed is exactly that single run.

The seeds stop together and resume together: their checkpoints are written at the same steps, all or none
(`save_checkpoints`), and a checkpoint names its population, so that a seed is never resumed apart from the others.
"""

import contextlib
import dataclasses
import functools
import os
import signal
import sys

import numpy as np
import torch
import torch.nn as nn

import ddpg
from ddpg import Agent, Args, Batch, Losses, NotFinite, OUNoise, ReplayBuffer, UsageError

NETWORKS = ("actor", "critic", "target_actor", "target_critic")  # the fields of an Agent that are networks


def train_population(args: Args) -> dict:
    """Train one agent per seed of --seeds (or go on with a population's runs: --resume DIR DIR ...), all in step;
    returns the run directories, each seed's final evaluation, the agents, the buffers and the exit status."""
    check_seeds(args)
    finish_renames(args.resume or ())
    if args.seeds is not None and len(args.seeds) == 1:
        return ddpg.train(dataclasses.replace(args, seed=args.seeds[0], seeds=None))  # exactly the single run
    if args.compile and args.cuda and torch.cuda.is_available():
        raise UsageError("--compile with --seeds on a GPU: the seeds' networks are batched instead, not compiled")
    if args.resume:
        members = [dataclasses.replace(args, resume=(run_dir,)) for run_dir in args.resume]
    else:
        members = [dataclasses.replace(args, seed=seed, seeds=None) for seed in args.seeds]
    setups, finished = [], []
    for member in members:  # all checked before any run opens; a finished population's every member says so
        try:
            setups.append(ddpg.checked(member, args.resume or ()))
        except ddpg.Finished as e:
            finished.append(str(e))
    if finished:
        raise ddpg.Finished("\n".join(finished))
    if len({setup.checkpoint["global_step"] if setup.checkpoint else 0 for setup in setups}) > 1:
        raise UsageError(f"--resume {' '.join(args.resume)}: its runs stopped at different steps")
    parts = []
    for setup in setups:
        ddpg.seed_everything(setup.args.seed, setup.args.torch_deterministic)  # each starts as its single run would
        parts.append(ddpg.initialise(setup.args, setup.obs_dim, setup.action_space, setup.device))
    envs, agents, rbs, noises = (list(part) for part in zip(*parts))
    args, device = setups[0].args, setups[0].device
    steps = (BatchedSteps if batches_seeds(device) else MemberSteps)(agents, rbs, noises, args, device)
    population = Population(setups, parts, steps)
    first = population.runs[0]
    ddpg.loop(args, population, None, None, None, population, first.global_step, first.num_updates, steps)
    runs = population.runs
    return {
        "run_dirs": [run.dir.path for run in runs],
        "eval_returns": [run.logs.eval_returns for run in runs],
        "agents": agents,
        "replay_buffers": rbs,
        "status": population.status,
    }


def check_seeds(args: Args) -> None:
    """Refuse, in one line, what cannot make one population."""
    if args.seeds is None:
        return
    if args.resume:
        raise UsageError("--seeds and --resume: a resumed population goes on with its own seeds")
    if not args.seeds:
        raise UsageError("--seeds needs at least one seed")
    if len(set(args.seeds)) < len(args.seeds):
        raise UsageError(f"--seeds: seed {next(s for s in args.seeds if args.seeds.count(s) > 1)} is given twice")
    for seed in args.seeds:
        ddpg.check_seed(seed, "--seeds")
    if args.seed not in (Args.seed, args.seeds[0]):
        raise UsageError(f"--seed {args.seed} and --seeds {' '.join(map(str, args.seeds))}: give one or the other")


def batches_seeds(device: torch.device) -> bool:
    """A population's updates run batched on a GPU; on a CPU the agents' plain updates one after another are faster."""
    return device.type == "cuda"


# ----------------------------------------------------------------------------------------------------------------
# The seeds' runs, as the loop sees one run


@contextlib.contextmanager
def named(name: str):
    """A value that is not finite, named with its seed: 'seed 4: parameter actor.net.0.weight'."""
    try:
        yield
    except NotFinite as e:
        raise NotFinite(f"{name}: {e}") from None


class SeenSignal:
    """The Ctrl-C (or SIGTERM) the seeds' runs act on at this step: one reading of the population's SignalFlag."""

    signum = None

    def restore(self) -> None:
        """Nothing to restore: the population's own SignalFlag catches the signals."""


class Member(ddpg.Run):
    """One seed's run in a population: a single run's directory, logs and checkpoints, with the population's Ctrl-C
    (`seen`), its W&B group, its seed before each line, the population's names in each checkpoint (`names`: a new
    population's, complete once every member has opened) and its checkpoints written with the others' (`due`)."""

    def __init__(self, setup: ddpg.Setup, parts: tuple, steps, seen: SeenSignal, names: list[str], due: list):
        self.due = due
        super().__init__(setup, *parts, steps, seen)
        if self.population is None:
            names.append(os.path.basename(self.dir.path))
            self.population = names

    @property
    def label(self) -> str:
        return f"seed {self.args.seed} | "

    @property
    def wandb_group(self) -> str:
        """The experiment's name, unless WANDB_RUN_GROUP names a group: W&B shows the seeds together."""
        return os.environ.get("WANDB_RUN_GROUP") or self.args.exp_name

    def save_checkpoint(self) -> None:
        self.due.append(self)  # written with the other seeds', at the end of the step (`Population.record`)

    def members(self) -> list[str]:
        """The run directories trained together with this one (itself included)."""
        return [os.path.join(os.path.dirname(self.dir.path), name) for name in self.population or []] or [self.dir.path]

    def resume_command(self) -> str:
        return f"python {sys.argv[0]} --resume {' '.join(self.members())}"

    def saved(self) -> str:
        return f"checkpoints saved in {', '.join(self.members())}"

    def kept(self) -> str:
        if not os.path.exists(self.dir.checkpoint):
            return "no checkpoint"
        return f"each seed's last good checkpoint is kept; resume with: {self.resume_command()}"


class Population:
    """A population's runs and envs, as the lesson's loop sees one run and one EnvRunner: the observations, actions
    and transitions of all seeds' envs one after another, seed by seed, and each seed's own bookkeeping. Its runs are
    opened here, after every seed's parts exist; if one cannot open, those opened before it are closed."""

    def __init__(self, setups: list[ddpg.Setup], parts: list[tuple], steps):
        self.envs, self.runs, self.due, self.status = [envs for envs, *_ in parts], [], [], None
        self.signals, self.seen, names = ddpg.SignalFlag(), SeenSignal(), []  # one reading per step: one stop
        try:
            for setup, run_parts in zip(setups, parts):
                self.runs.append(Member(setup, run_parts, steps, self.seen, names, self.due))
        except BaseException:  # (a directory in use, a full disk) released, as the members opened leave no new run
            for run in self.runs:  # directory behind; this process may go on (tests, notebooks)
                run.started, run.status = False, ddpg.EXIT_FAILED
                run.close()
            for envs in self.envs[len(self.runs) + 1 :]:  # those of the members after the one that failed
                envs.close()
            self.signals.restore()
            raise

    @property
    def obs(self) -> np.ndarray:
        return np.concatenate([envs.obs for envs in self.envs])

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.concatenate([envs.episode_lengths for envs in self.envs])

    def random_actions(self) -> np.ndarray:
        return np.concatenate([envs.random_actions() for envs in self.envs])  # each seed's from its own generator

    def step(self, actions: np.ndarray):
        results = []
        for envs, own, run in zip(self.envs, np.split(actions, len(self.envs)), self.runs):
            with named(f"seed {run.args.seed}"):
                results.append(envs.step(own))
        *arrays, finished = zip(*results)
        return *(np.concatenate(array) for array in arrays), finished  # finished episodes: one list per seed

    def record(self, global_step: int, num_updates: int, finished: list, losses: Losses | None) -> None:
        self.seen.signum, interrupted = self.signals.signum, None
        for k, run in enumerate(self.runs):
            own = None if losses is None else Losses(*(None if x is None else x[k] for x in losses))
            try:
                with named(f"seed {run.args.seed}"):
                    run.record(global_step, num_updates, finished[k], own)
            except ddpg.Interrupted as e:  # the others write their checkpoints too
                interrupted = e
        save_checkpoints(self.due)
        self.due.clear()
        if interrupted:
            raise interrupted

    def __enter__(self) -> "Population":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        messages = [run.end(kind, error) for run in self.runs]
        self.signals.restore()
        self.status = max(run.status for run in self.runs)  # 1 if a seed's end failed (its model.pt not written)
        if kind is None:  # each seed's final evaluation, or why it could not end
            for run, message in zip(self.runs, messages):
                ddpg.say(f"seed {run.args.seed}: {message}", run.status, run.global_step)
            return True
        return ddpg.say(messages[0], self.status, self.runs[0].global_step)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: all seeds' at once, or none


def save_checkpoints(runs: list[Member]) -> None:
    """Write the runs' checkpoints, all or none, so that a population always resumes from one step: every agent
    checked first, every checkpoint written beside its place, then all renamed into place, Ctrl-C and SIGTERM
    deferred meanwhile (a second one would otherwise stop the process between two renames)."""
    for run in runs:
        with named(f"seed {run.args.seed}"):
            run.check_finite()
    written = []
    try:
        for run in runs:
            written.append(run.write_checkpoint())
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                os.remove(path)
        raise
    with signals_deferred():
        for run, path in zip(runs, written):
            os.replace(path, run.dir.checkpoint)


@contextlib.contextmanager
def signals_deferred():
    """Ctrl-C and SIGTERM arriving in the block are acted on after it, by the handlers they would have met before."""
    arrived = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: arrived.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in arrived:
            signal.raise_signal(signum)


def finish_renames(run_dirs: tuple[str, ...]) -> None:
    """A population killed (SIGKILL, a power cut) between renaming two seeds' checkpoints into place leaves seeds one
    period behind, each with the newer checkpoint complete beside its place (`save_checkpoints` writes them all before
    it renames one): their renames are finished here, under the runs' locks."""
    paths = [os.path.join(run_dir, ddpg.CHECKPOINT_FILE) for run_dir in run_dirs]
    names = sorted(os.path.basename(os.path.normpath(run_dir)) for run_dir in run_dirs)
    finished = any(os.path.isfile(os.path.join(run_dir, ddpg.MODEL_FILE)) for run_dir in run_dirs)
    if finished or not all(sorted(ddpg.saved(path, "population") or []) == names for path in paths):
        return  # finished, or not one whole population: `ddpg.checked` says so
    for run_dir in run_dirs:
        ddpg.check_writable(run_dir)
    with contextlib.ExitStack() as locks:
        for run_dir in run_dirs:
            locks.callback(os.close, ddpg.lock_run_dir(run_dir))
        steps = [ddpg.saved(path, "global_step") for path in paths]
        newest = max((step for step in steps if step is not None), default=None)
        for path, step in zip(paths, steps):
            if step is not None and step < newest and ddpg.saved(path + ddpg.BESIDE, "global_step") == newest:
                os.replace(path + ddpg.BESIDE, path)
                print(f"{path}: its step {newest} put in place (the population stopped while saving it)")


# ----------------------------------------------------------------------------------------------------------------
# The seeds' steps: each agent's own on a CPU, all agents' in one batched call on a GPU


class MemberSteps:
    """A population's steps on a CPU: each seed's own lesson steps (`explore`, `update`, `ReplayBuffer.add`), one
    after another, on its rows of the arrays (`num_envs` rows per seed, seed by seed). The loop's agent, buffer and
    noise arguments are None: each seed's own are used."""

    def __init__(self, agents: list[Agent], rbs: list[ReplayBuffer], noises: list, args: Args, device):
        for agent in agents:
            ddpg.ready_for_device(agent, args, device)
        self.members, self.rows = list(zip(agents, rbs, noises)), args.num_envs

    def own(self, k: int, arrays) -> list[np.ndarray]:
        return [array[k * self.rows : (k + 1) * self.rows] for array in arrays]

    def explore(self, agent, noise, obs: np.ndarray, episode_starts: np.ndarray) -> torch.Tensor:
        return torch.cat(
            [ddpg.explore(a, n, *self.own(k, (obs, episode_starts))) for k, (a, _, n) in enumerate(self.members)]
        )

    def update(self, agent, rb, batch_size: int, gamma: float, tau: float, update_actor: bool) -> Losses:
        each = [ddpg.update(a, b, batch_size, gamma, tau, update_actor) for a, b, _ in self.members]
        return Losses(*(None if parts[0] is None else torch.stack(parts) for parts in zip(*each)))

    def add(self, *transition: np.ndarray) -> None:
        for k, (_, rb, _) in enumerate(self.members):
            rb.add(*self.own(k, transition))

    def flush(self) -> None:
        """Nothing to store: `add` stored each transition at once."""


class BatchedSteps(ddpg.FastPath):
    """A population's steps on a GPU: ddpg.py's `FastPath` over all seeds' envs (`num_envs` rows per seed, seed by
    seed), where one call updates all K agents (`batched_update`) and one stores all their transitions and selects
    all their actions (`store_and_select` on the stacked buffer, noise and actor)."""

    def __init__(self, agents: list[Agent], rbs: list[ReplayBuffer], noises: list, args: Args, device):
        nets, optimizers = stack_agents(agents, args, device)
        rb, n = StackedBuffer(rbs), args.num_envs
        rows = dataclasses.replace(args, num_envs=len(agents) * n)  # every seed's envs
        noise = ddpg.make_noise(rows, rbs[0].actions.shape[1], device)
        for k, own in enumerate(noises):  # each seed's OU state: a view of its rows
            if isinstance(own, OUNoise):
                own.state = noise.state[k * n : (k + 1) * n]
        batched = Agent(**nets, actor_optimizer=optimizers["actor"], critic_optimizer=optimizers["critic"])

        def update(batch_size: int, gamma: float, tau: float, update_actor: bool) -> Losses:  # as `ddpg.update`
            return batched_update(nets, optimizers, rb.sample(batch_size), gamma, tau, update_actor)

        device_step = functools.partial(ddpg.store_and_select, rb, noise, batched)
        super().__init__(update, device_step, rbs[0].obs.shape[1], rbs[0].actions.shape[1], rows, device)


def stack_agents(agents: list[Agent], args: Args, device: torch.device) -> tuple[dict, dict]:
    """The agents' networks stacked (`Batched`), with one Adam for each kind over the stacked parameters; each
    agent's own optimisers become its share of those (`MemberOptimizer`). Returns (networks, optimisers)."""
    nets = {
        name: Batched([getattr(agent, name) for agent in agents], trained=not name.startswith("target"))
        for name in NETWORKS
    }
    adam = functools.partial(
        torch.optim.Adam, lr=args.learning_rate, fused=True, capturable=ddpg.uses_cuda_graphs(args, device)
    )
    optimizers = {"actor": adam(nets["actor"].parameters()), "critic": adam(nets["critic"].parameters())}
    for k, agent in enumerate(agents):
        agent.actor_optimizer = MemberOptimizer(optimizers["actor"], k)
        agent.critic_optimizer = MemberOptimizer(optimizers["critic"], k)
    return nets, optimizers


class Batched:
    """K networks of one architecture as one: their parameters stacked along a first dimension (torch.func's
    `stack_module_state`; each member module's parameters become views of its slice, so its evaluations and
    checkpoints stay its own), called member by member on the slices of the inputs (vmap of functional_call)."""

    def __init__(self, modules: list[nn.Module], trained: bool):
        self.template = modules[0]
        self.params, self.buffers = torch.func.stack_module_state(modules)
        self.requires_grad_(trained)
        for k, module in enumerate(modules):
            for name, param in module.named_parameters():
                param.data = self.params[name].data[k]
        self.action_scale = getattr(self.template, "action_scale", None)  # an actor's box, the same for all members
        self.action_bias = getattr(self.template, "action_bias", None)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def requires_grad_(self, requires_grad: bool) -> None:
        for param in self.params.values():
            param.requires_grad_(requires_grad)

    def member(self, params: dict, buffers: dict, *inputs: torch.Tensor) -> torch.Tensor:
        """One member's network (its parameters and buffers given), as a function: what vmap maps."""
        return torch.func.functional_call(self.template, (params, buffers), inputs)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The members' outputs for their inputs, one after another: (K * n, ...) in and out."""
        k = len(next(iter(self.params.values())))
        per_member = (x.view(k, -1, *x.shape[1:]) for x in inputs)
        return torch.func.vmap(self.member)(self.params, self.buffers, *per_member).flatten(0, 1)


def batched_update(nets: dict, optimizers: dict, data: Batch, gamma: float, tau: float, update_actor: bool) -> Losses:
    """`ddpg.update` for K agents at once, on their minibatches `data` (K, batch, ...), step by step as it: each
    member's losses come from the lesson's `critic_loss` and `actor_loss` on its own networks (vmapped), summed for
    one backward pass, which gives each member exactly its own gradients (their parameters are apart). Adam, being
    elementwise, updates the stacked parameters as K separate Adams would."""
    params = {name: net.params for name, net in nets.items()}
    buffers = {name: net.buffers for name, net in nets.items()}

    def networks(params, buffers, *names):  # inside vmap: a member's networks as functions
        return [functools.partial(nets[name].member, params[name], buffers[name]) for name in names]

    def critic_losses(params, buffers, data):
        return ddpg.critic_loss(*networks(params, buffers, "critic", "target_actor", "target_critic"), data, gamma)

    def actor_losses(params, buffers, obs):
        return ddpg.actor_loss(*networks(params, buffers, "actor", "critic"), obs)

    loss, q = torch.func.vmap(critic_losses)(params, buffers, data)
    optimizers["critic"].zero_grad(set_to_none=True)
    loss.sum().backward()
    optimizers["critic"].step()
    losses = Losses(critic=loss.detach(), q_values=q.detach().mean(-1), actor=None)
    if not update_actor:
        return losses
    nets["critic"].requires_grad_(False)  # frozen for the actor's step, as in `ddpg.update`
    loss = torch.func.vmap(actor_losses)(params, buffers, data.obs)
    optimizers["actor"].zero_grad(set_to_none=True)
    loss.sum().backward()
    optimizers["actor"].step()
    nets["critic"].requires_grad_(True)
    ddpg.soft_update(nets["target_actor"], nets["actor"], tau)
    ddpg.soft_update(nets["target_critic"], nets["critic"], tau)
    return losses._replace(actor=loss.detach())


class MemberOptimizer:
    """A population member's share of an Adam over stacked parameters, with the state_dict and load_state_dict of an
    Adam of its own: its checkpoints are a single run's."""

    def __init__(self, stacked: torch.optim.Optimizer, k: int):
        self.stacked, self.k = stacked, k
        self.param_groups = stacked.param_groups

    def state_dict(self) -> dict:
        full = self.stacked.state_dict()
        own = {
            i: {name: x if x.dim() == 0 else x[self.k] for name, x in state.items()}
            for i, state in full["state"].items()
        }
        return {"state": own, "param_groups": full["param_groups"]}

    def load_state_dict(self, state: dict) -> None:
        params = self.param_groups[0]["params"]
        if state["state"] and not self.stacked.state:  # a first step with zero gradients makes the state, moves nothing
            for p in params:
                p.grad = torch.zeros_like(p)
            self.stacked.step()
        for i, saved in state["state"].items():
            for name, x in self.stacked.state[params[i]].items():
                (x if x.dim() == 0 else x[self.k]).copy_(saved[name])


class StackedBuffer:
    """A population's replay buffers as one: each column stacked (K, capacity, ...), each seed's ReplayBuffer made
    views of its slice. `add` and `sample` do what ReplayBuffer's do, for all seeds at once."""

    def __init__(self, rbs: list[ReplayBuffer]):
        self.capacity = rbs[0].capacity
        for name in (*Batch._fields, "pos", "size"):
            setattr(self, name, torch.stack([getattr(rb, name) for rb in rbs]))
            for k, rb in enumerate(rbs):
                setattr(rb, name, getattr(self, name)[k])
        self.seeds = torch.arange(len(rbs), device=self.pos.device)[:, None]  # (K, 1): row k indexes seed k's rows

    def add(self, *transition: torch.Tensor) -> None:
        """Transitions of all seeds' envs, seed by seed ((K * num_envs, ...) each, in the order of a Batch)."""
        n = len(transition[0]) // len(self.seeds)
        idx = (self.pos[:, None] + torch.arange(n, device=self.pos.device)) % self.capacity
        for name, values in zip(Batch._fields, transition):
            getattr(self, name)[self.seeds, idx] = values.view(len(self.seeds), n, *values.shape[1:])
        self.pos.copy_((self.pos + n) % self.capacity)
        self.size.copy_((self.size + n).clamp(max=self.capacity))

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(ddpg.SAMPLE_RANGE, (len(self.seeds), batch_size), device=self.pos.device)
        idx = idx % self.size[:, None]
        return Batch(*(getattr(self, name)[self.seeds, idx] for name in Batch._fields))
