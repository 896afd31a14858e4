"""Many seeds in one process: `python population.py --seeds 1 2 3` trains one DDPG agent per seed, side by side and in
step (`python population.py --resume DIR DIR ...` goes on with a population's runs). Every other option is ddpg.py's.

This file builds on ddpg.py through what ddpg.py declares, and ddpg.py knows nothing of it. Each seed's envs,
networks, optimisers, replay buffer, noise, evaluations and run directory are its own, made as a single run with that
--seed makes them, and each seed's directory is a single run's: the same files, tags and checkpoints, which
`--eval-checkpoint` reads as any other. The loop is the lesson's, over the envs of all seeds one after another
(`Population`). On a CPU each agent's own lesson steps run one after another (`MemberSteps`). On a GPU the K agents'
state is stacked here (`Stacked`: parameters, Adams and replay buffers, K along a first dimension), one call updates
all K agents and one stores and selects for all (ddpg.py's `FastPath` made with them): the kernels are K times wider,
about as fast as one agent's. A seed's own networks and optimisers are copied out of the stacked ones when its run
reads them (an evaluation, a checkpoint, model.pt); its buffer is a view of its rows. Minibatches and noise come from
one generator, so a seed here is not bit-identical to its single run; a population of one seed is exactly that run.

The seeds stop together and resume together: their checkpoints are written at the same steps, all or none
(`save_checkpoints`), and each names the population's runs (its entry "population", which ddpg.py ignores). Resumed
alone with `python ddpg.py --resume DIR`, a member's directory trains on as a single run, and is no longer resumed
with the others.

ddpg.py's names used here, its interface to a file built on it: Args, command, UsageError, checked, initialise, Run,
loop, fast_path, FastPath, explore, update, ReplayBuffer, critic_loss, actor_loss, soft_update, Losses, NotFinite,
Interrupted, CHECKPOINT_FILE, saved.
"""

import argparse
import contextlib
import dataclasses
import functools
import os
import sys
import types

import numpy as np
import torch
import torch.nn as nn

import ddpg

NETWORKS = ("actor", "critic", "target_actor", "target_critic")  # the fields of an Agent that are networks
OPTIMIZERS = {"actor_optimizer": "actor", "critic_optimizer": "critic"}  # an Agent's Adams, and what each trains
PENDING = ".next"  # a member's checkpoint is written to its place with this suffix, then all are renamed into place
KEY = "population"  # the checkpoint entry naming the run directories of a population (ddpg.py ignores it)


def main() -> int:
    own, rest = parser().parse_known_args()
    return ddpg.command(lambda args: train_population(args, own.seeds, own.resume)["status"], rest)


def parser() -> argparse.ArgumentParser:
    """This file's own options; the others, left over, are ddpg.py's (checked by it, in one line each)."""
    parser = argparse.ArgumentParser(
        prog="population.py",
        description="Train one DDPG agent per seed in this process, side by side and in step (batched on a GPU).",
        epilog="Every other option is ddpg.py's, given to each seed's run: python ddpg.py --help lists them.",
        allow_abbrev=False,
    )
    parser.add_argument("--seeds", nargs="*", metavar="SEED", help="the seeds: one run directory each")
    parser.add_argument("--resume", nargs="*", metavar="DIR", help="go on with a population's run directories")
    return parser


def train_population(args: ddpg.Args, seeds=None, resume=None) -> dict:
    """Train one agent per seed of `seeds` (or go on with a population's runs: `resume`, their directories), all in
    step; returns the run directories, each seed's final evaluation, the agents, the buffers and the exit status."""
    seeds = check_population(args, seeds, resume)
    if resume:
        check_whole(resume)
        finish_renames(resume)
        members = [dataclasses.replace(args, resume=(run_dir,)) for run_dir in resume]
    else:
        members = [dataclasses.replace(args, seed=seed) for seed in seeds]
    population = Population(*made(members), args)
    first = population.runs[0]
    ddpg.loop(first.args, population, None, None, None, population, first.global_step, first.num_updates,
              population.steps)  # fmt: skip
    runs = population.runs
    return {
        "run_dirs": [run.dir.path for run in runs],
        "eval_returns": [run.logs.eval_returns for run in runs],
        "agents": [run.agent for run in runs],
        "replay_buffers": [run.rb for run in runs],
        "status": population.status,
    }


def made(members: list[ddpg.Args]) -> tuple[list, list]:
    """Each member checked and its envs, agent, buffer and noise made, as its single run makes them (`checked` seeds
    python, numpy and torch first); returns their setups and parts. If one is refused, those made are closed."""
    setups, parts = [], []
    try:
        for member in members:
            setups.append(ddpg.checked(member))
            setup = setups[-1]
            parts.append(ddpg.initialise(setup.args, setup.obs_dim, setup.action_space, setup.device))
    except BaseException:
        for envs, *_ in parts:
            envs.close()
        raise
    return setups, parts


def check_population(args: ddpg.Args, seeds: list[str] | None, resume: list[str] | None) -> tuple[int, ...] | None:
    """Refuse, in one line, what cannot make one population; returns the seeds as numbers."""
    if (seeds is None) == (resume is None):
        raise ddpg.UsageError("population.py needs --seeds (a new population) or --resume (one that stopped)")
    if args.resume or args.eval_checkpoint:  # given to train_population in a call
        raise ddpg.UsageError("--resume and --eval-checkpoint of one run directory are ddpg.py's")
    if resume is not None:
        if not resume:
            raise ddpg.UsageError("--resume needs a run directory")
        return None
    if not seeds:
        raise ddpg.UsageError("--seeds needs at least one seed")
    if not all(str(seed).isdigit() for seed in seeds):
        raise ddpg.UsageError(f"--seeds takes whole numbers in [0, 2^32), got {' '.join(map(str, seeds))}")
    seeds = tuple(int(seed) for seed in seeds)
    if len(set(seeds)) < len(seeds):
        raise ddpg.UsageError(f"--seeds: seed {next(s for s in seeds if seeds.count(s) > 1)} is given twice")
    if args.seed not in (ddpg.Args.seed, seeds[0]):
        raise ddpg.UsageError(f"--seed {args.seed} and --seeds {' '.join(map(str, seeds))}: give one or the other")
    return seeds


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
    except ddpg.NotFinite as e:
        raise ddpg.NotFinite(f"{name}: {e}") from None


class Population:
    """A population's runs and envs, as the lesson's loop sees one run and one EnvRunner: the observations, actions
    and transitions of all seeds' envs one after another, seed by seed, and each seed's own bookkeeping (a ddpg.py
    `Run`, given what differs for a member). Its runs are opened here, after every seed's parts exist; if one cannot
    open, those opened before it are closed. Then the loop's steps are made (`steps`) from the runs' parts, as a
    resumed run restored them: batched on a GPU (`FastPath` over the stacked agents), else seed by seed."""

    def __init__(self, setups: list, parts: list[tuple], args: ddpg.Args):
        device, k = setups[0].device, len(setups)
        batched = batches_seeds(device) and k > 1
        if batched and args.compile:
            raise ddpg.UsageError(
                "--compile with --seeds on a GPU: the seeds' networks are batched instead, not compiled"
            )
        self.envs, self.runs, self.due, self.status = [envs for envs, *_ in parts], [], [], None
        self.steps, self.batched = None, None
        buffer = StackedBuffer([rb for _, _, rb, _ in parts]) if batched else None  # each seed's rows: a view
        try:
            for member, (setup, (envs, agent, rb, noise)) in enumerate(zip(setups, parts)):
                run = ddpg.Run(
                    setup, envs, agent, buffer.view(member) if buffer else rb, noise,
                    sync=functools.partial(self.sync, member),  # the population's steps, not a FastPath of its own
                    signals=self.runs[0].signals if self.runs else None,  # one Ctrl-C for all: one step to stop at
                    label=f"seed {setup.args.seed} | ",
                    group=os.environ.get("WANDB_RUN_GROUP") or setup.args.exp_name,  # W&B shows the seeds together
                    save=self.due.append,  # written with the other seeds', at the end of the step (`record`)
                    together=self.dirs,
                )  # fmt: skip
                self.runs.append(run)
            if buffer:
                self.batched = stack([run.agent for run in self.runs])
                rows = dataclasses.replace(setups[0].args, num_envs=k * setups[0].args.num_envs)  # all seeds' envs
                noise = Noises([run.noise for run in self.runs])
                self.steps = ddpg.FastPath(self.batched, buffer, noise, rows, device, learn=batched_update)
            else:
                self.steps = MemberSteps(self.runs, setups[0].args, device)
        except BaseException:  # (a directory in use, a full disk) released, as the members opened leave no new run
            for run in self.runs:  # directory behind; this process may go on (tests, notebooks)
                run.abandon()
            for envs in self.envs[len(self.runs) + 1 :]:  # those of the members after the one that failed
                envs.close()
            raise

    def dirs(self) -> list[str]:
        """The run directories trained together."""
        return [run.dir.path for run in self.runs]

    def sync(self, k: int) -> None:
        """Before member k's run reads its agent or buffer: its transitions stored; on a GPU, its networks and
        optimisers copied out of the stacked ones."""
        if self.steps is None:  # still opening: its run restored what its checkpoint holds
            return
        self.steps.flush()
        if self.batched is not None:
            copy_out(self.batched, k, self.runs[k].agent)

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

    def record(self, global_step: int, num_updates: int, finished: list, losses) -> None:
        interrupted = None
        for k, run in enumerate(self.runs):
            own = None if losses is None else ddpg.Losses(*(None if x is None else x[k] for x in losses))
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
        if kind is None:  # each seed's final evaluation, or why it could not end
            said = all([run.__exit__(None, None, None) for run in self.runs])
        else:  # one error or signal for all: said once, by the first seed's run
            said = self.runs[0].__exit__(kind, error, traceback)
            for run in self.runs[1:]:
                run.end(kind, error)
        self.status = max(run.status for run in self.runs)  # 1 if a seed's end failed (its model.pt not written)
        return said


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: all seeds' at once, or none


def save_checkpoints(runs: list) -> None:
    """Write the runs' checkpoints, all or none, so that a population always resumes from one step: every checkpoint
    written beside its place (`Run.write_checkpoint`, which refuses a broken agent), then all renamed into place,
    Ctrl-C and SIGTERM deferred meanwhile (a second one would otherwise stop the process between two renames)."""
    written, names = [], [os.path.basename(os.path.normpath(run.dir.path)) for run in runs]
    try:
        for run in runs:
            with named(f"seed {run.args.seed}"):
                run.write_checkpoint(run.dir.checkpoint + PENDING, **{KEY: names})
            written.append(run.dir.checkpoint)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                os.remove(path + PENDING)
        raise
    if runs:
        with runs[0].signals.deferred():
            for path in written:
                os.replace(path + PENDING, path)


def check_whole(run_dirs: list[str]) -> None:
    """Refuse, in one line, run directories that are not one whole population: each checkpoint names the others."""
    given = sorted(name(run_dir) for run_dir in run_dirs)
    for run_dir in run_dirs:
        path = os.path.join(run_dir, ddpg.CHECKPOINT_FILE)
        if not os.path.isfile(path) or ddpg.saved(path, "args") is None:
            continue  # no checkpoint, or one not ours: `ddpg.checked` says so
        members = ddpg.saved(path, KEY)
        if members is None:
            raise ddpg.UsageError(f"{run_dir} is a single run, not a population's: python ddpg.py --resume {run_dir}")
        if sorted(members) != given:
            others = " ".join(os.path.join(os.path.dirname(os.path.normpath(run_dir)), m) for m in members)
            raise ddpg.UsageError(
                f"{run_dir} was trained with {len(members) - 1} other seeds: resume them together, "
                f"python {sys.argv[0]} --resume {others}"
            )


def name(run_dir: str) -> str:
    return os.path.basename(os.path.normpath(run_dir))


def finish_renames(run_dirs: list[str]) -> None:
    """A population killed (SIGKILL, a power cut) between renaming two seeds' checkpoints into place leaves seeds one
    period behind, each with the newer checkpoint complete beside its place (`save_checkpoints` writes them all before
    it renames one): their renames are finished here. Then every checkpoint must be at one step."""
    paths = [os.path.join(run_dir, ddpg.CHECKPOINT_FILE) for run_dir in run_dirs]
    steps = [ddpg.saved(path, "global_step") for path in paths]
    newest = max((step for step in steps if step is not None), default=None)
    for path, step in zip(paths, steps):
        if step is not None and step < newest and ddpg.saved(path + PENDING, "global_step") == newest:
            os.replace(path + PENDING, path)  # the population's process was renaming: what it was about to do
            print(f"{path}: its step {newest} put in place (the population stopped while saving it)")
    steps = [ddpg.saved(path, "global_step") for path in paths]
    if None not in steps and len(set(steps)) > 1:
        raise ddpg.UsageError(f"--resume {' '.join(run_dirs)}: its runs stopped at different steps")


# ----------------------------------------------------------------------------------------------------------------
# The seeds' steps: each agent's own one after another, or all agents' in one batched call on a GPU


class MemberSteps:
    """A population's steps seed by seed, on each seed's rows of the arrays (`num_envs` rows per seed): its lesson
    steps (`explore`, `update`, `ReplayBuffer.add`) on a CPU, its run's FastPath on a GPU (one seed: exactly its
    single run). The loop's agent, buffer and noise arguments are None: each seed's own are used."""

    def __init__(self, runs: list, args: ddpg.Args, device: torch.device):
        self.rows, self.members = args.num_envs, []
        for run in runs:
            fast = ddpg.fast_path(run.agent, run.rb, run.noise, args, device)  # None on a CPU
            steps = (fast.explore, fast.update, fast.add) if fast else (ddpg.explore, ddpg.update, run.rb.add)
            self.members.append((run.agent, run.rb, run.noise, fast, *steps))

    def own(self, k: int, arrays) -> list[np.ndarray]:
        return [array[k * self.rows : (k + 1) * self.rows] for array in arrays]

    def explore(self, agent, noise, obs: np.ndarray, episode_starts: np.ndarray) -> torch.Tensor:
        actions = [select(a, n, *self.own(k, (obs, episode_starts))) for k, (a, _, n, _, select, *_) in
                   enumerate(self.members)]  # fmt: skip
        return torch.cat([a.cpu() for a in actions])

    def update(self, agent, rb, batch_size: int, gamma: float, tau: float, update_actor: bool):
        each = [learn(a, b, batch_size, gamma, tau, update_actor) for a, b, _, _, _, learn, _ in self.members]
        return ddpg.Losses(*(None if parts[0] is None else torch.stack(parts) for parts in zip(*each)))

    def add(self, *transition: np.ndarray) -> None:
        for k, (*_, store) in enumerate(self.members):
            store(*self.own(k, transition))

    def flush(self) -> None:
        """Store what a seed's FastPath staged (a CPU's lesson steps stored each transition at once)."""
        for _, _, _, fast, *_ in self.members:
            if fast:
                fast.flush()


class StackedBuffer:
    """The seeds' replay buffers as one: each column and counter stacked (K, ...). `add` and `sample` are the lesson's
    `ReplayBuffer.add` and `ReplayBuffer.sample`, mapped over the seeds (vmap): each seed stores into its own rows and
    samples its minibatch from them only. A seed's run reads and restores its rows through a view (`view`)."""

    def __init__(self, rbs: list):
        self.capacity, self.k = rbs[0].capacity, len(rbs)
        self.tensors = {
            name: torch.stack([vars(rb)[name] for rb in rbs])
            for name, value in vars(rbs[0]).items()
            if isinstance(value, torch.Tensor)
        }
        self.obs, self.actions = self.tensors["obs"], self.tensors["actions"]  # (K, capacity, dim): FastPath's widths

    def own(self, tensors: dict) -> types.SimpleNamespace:
        """One seed's buffer, as the lesson's methods and ddpg.py's checkpoints read one (columns, counters)."""
        return types.SimpleNamespace(capacity=self.capacity, **tensors)

    def view(self, k: int) -> types.SimpleNamespace:
        return self.own({name: tensor[k] for name, tensor in self.tensors.items()})

    def add(self, *transition: torch.Tensor) -> None:
        """Transitions of all seeds' envs, seed by seed ((K * num_envs, ...) each, in the order of a Batch)."""
        per_seed = [x.view(self.k, -1, *x.shape[1:]) for x in transition]
        store = torch.func.vmap(lambda tensors, *own: ddpg.ReplayBuffer.add(self.own(tensors), *own), out_dims=None)
        store(self.tensors, *per_seed)

    def sample(self, batch_size: int):
        """Each seed's minibatch, (K, batch_size, ...) in each field of a Batch."""
        draw = torch.func.vmap(
            lambda tensors: ddpg.ReplayBuffer.sample(self.own(tensors), batch_size), randomness="different"
        )
        return draw(self.tensors)


class Noises:
    """The seeds' exploration noises as one over all their envs' rows, as `explore` resets and samples a noise: each
    seed's own process on its rows."""

    def __init__(self, noises: list):
        self.noises = noises

    def reset(self, episode_starts: torch.Tensor) -> None:
        for noise, own in zip(self.noises, episode_starts.chunk(len(self.noises))):
            noise.reset(own)

    def sample(self) -> torch.Tensor:
        return torch.cat([noise.sample() for noise in self.noises])


class Batched:
    """K networks of one architecture as one: their parameters stacked along a first dimension (torch.func's
    `stack_module_state`: copies, the population's own), called member by member on the slices of the inputs (vmap of
    functional_call). `state(k)`: member k's state_dict."""

    def __init__(self, modules: list[nn.Module], trained: bool):
        self.template = modules[0]  # its structure only: what functional_call calls
        self.params, self.buffers = torch.func.stack_module_state(modules)
        self.requires_grad_(trained)
        self.action_scale = getattr(self.template, "action_scale", None)  # an actor's box, the same for all members
        self.action_bias = getattr(self.template, "action_bias", None)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def requires_grad_(self, requires_grad: bool) -> None:
        for param in self.params.values():
            param.requires_grad_(requires_grad)

    def state(self, k: int) -> dict:
        return {name: tensor[k] for name, tensor in (self.params | self.buffers).items()}

    def member(self, params: dict, buffers: dict, *inputs: torch.Tensor) -> torch.Tensor:
        """One member's network (its parameters and buffers given), as a function: what vmap maps."""
        return torch.func.functional_call(self.template, (params, buffers), inputs)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The members' outputs for their inputs, one after another: (K * n, ...) in and out."""
        k = len(next(iter(self.params.values())))
        per_member = (x.view(k, -1, *x.shape[1:]) for x in inputs)
        return torch.func.vmap(self.member)(self.params, self.buffers, *per_member).flatten(0, 1)


def stack(agents: list) -> types.SimpleNamespace:
    """The agents as one, as the lesson's functions read an Agent: their networks stacked (`Batched`), with one Adam of
    the members' own kind and settings for each over the stacked parameters, holding the members' moments stacked
    (a resumed population's). Adam is elementwise: it updates the stacked parameters as K separate Adams would."""
    nets = {
        name: Batched([getattr(a, name) for a in agents], trained=not name.startswith("target")) for name in NETWORKS
    }
    optimizers = {}
    for name, net in OPTIMIZERS.items():
        members = [getattr(agent, name) for agent in agents]
        adam = type(members[0])(nets[net].parameters(), **members[0].defaults)
        states = [member.state_dict()["state"] for member in members]
        stacked = {
            i: {key: x if x.dim() == 0 else torch.stack([s[i][key] for s in states]) for key, x in state.items()}
            for i, state in states[0].items()
        }  # the step count is the same for all (0-dim); moments stacked
        adam.load_state_dict({"state": stacked, "param_groups": adam.state_dict()["param_groups"]})
        optimizers[name] = adam
    return types.SimpleNamespace(**nets, **optimizers)


def copy_out(batched: types.SimpleNamespace, k: int, agent) -> None:
    """Member k's networks and Adams, copied out of the stacked ones into its own agent (through their
    `load_state_dict`): what its run evaluates and checkpoints."""
    for name in NETWORKS:
        getattr(agent, name).load_state_dict(getattr(batched, name).state(k))
    for name in OPTIMIZERS:
        own, stacked = getattr(agent, name), getattr(batched, name).state_dict()
        state = {
            i: {key: (x if x.dim() == 0 else x[k]).clone() for key, x in moments.items()}
            for i, moments in stacked["state"].items()
        }
        own.load_state_dict({"state": state, "param_groups": own.state_dict()["param_groups"]})


def batched_update(agent, rb: StackedBuffer, batch_size: int, gamma: float, tau: float, update_actor: bool):
    """`ddpg.update` for K agents at once (`agent`: `stack`'s), step by step as it: each member's minibatch from its
    own rows, its losses from the lesson's `critic_loss` and `actor_loss` on its own networks (vmapped), summed for one
    backward pass, which gives each member exactly its own gradients (their parameters are apart)."""
    data = rb.sample(batch_size)  # (K, batch, ...)
    nets = {name: getattr(agent, name) for name in NETWORKS}
    params = {name: net.params for name, net in nets.items()}
    buffers = {name: net.buffers for name, net in nets.items()}

    def networks(params, buffers, *names):  # inside vmap: a member's networks as functions
        return [functools.partial(nets[name].member, params[name], buffers[name]) for name in names]

    def critic_losses(params, buffers, data):
        return ddpg.critic_loss(*networks(params, buffers, "critic", "target_actor", "target_critic"), data, gamma)

    def actor_losses(params, buffers, obs):
        return ddpg.actor_loss(*networks(params, buffers, "actor", "critic"), obs)

    loss, q = torch.func.vmap(critic_losses)(params, buffers, data)
    agent.critic_optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()
    agent.critic_optimizer.step()
    losses = ddpg.Losses(critic=loss.detach(), q_values=q.detach().mean(-1), actor=None)
    if not update_actor:
        return losses
    agent.critic.requires_grad_(False)  # frozen for the actor's step, as in `ddpg.update`
    loss = torch.func.vmap(actor_losses)(params, buffers, data.obs)
    agent.actor_optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()
    agent.actor_optimizer.step()
    agent.critic.requires_grad_(True)
    ddpg.soft_update(agent.target_actor, agent.actor, tau)
    ddpg.soft_update(agent.target_critic, agent.critic, tau)
    return losses._replace(actor=loss.detach())


if __name__ == "__main__":
    sys.exit(main())
