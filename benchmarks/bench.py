"""Speed and memory of ddpg.py on this machine, against a plain eager baseline, as a markdown report.

    python benchmarks/bench.py              # about 10 minutes on 2 CPU cores; writes benchmarks/results.md
    python benchmarks/bench.py --quick      # fewer repeats, for a smoke test; writes nothing
    python benchmarks/bench.py --gpu-only   # on a GPU machine: tables 2 (threads only) and 3; writes results-gpu.md
    python benchmarks/bench.py --against OTHER/ddpg.py  # table 2 only, ddpg.py against another copy; writes nothing
    python benchmarks/bench.py --seeds 8 16  # table 5 only: many seeds, in one process and as processes; writes nothing
    python benchmarks/bench.py --shared     # table 6 only: thread counts, quiet and beside busy processes; prints it

What it measures, in this process (table 5 also in processes of its own), on the current machine:
1. the update: one full DDPG update (critic and actor, batch 256, 256x256 networks, HalfCheetah-v5 sizes), timed
   for ddpg.py, ddpg.py with its networks compiled (--compile) and the baseline alternately (A B C A B C ...);
   FLOPs counted by torch; and the matmul rate of this machine for exactly the matrix products the update
   performs (same shapes, same transposes, back to back), so the update's achieved rate can be given as a
   fraction of what the matrix products alone reach;
2. env steps per second of whole runs (set-up, a random warm-up of one batch, then one update per step, policy
   frequency 2, 1 env, and the final evaluation) for Pendulum-v1 and HalfCheetah-v5: `ddpg.train`, with and
   without --compile, against the baseline loop below, alternately; HalfCheetah-v5 for --threads 1, 2, 4, ... up
   to the core count;
3. where a GPU is present, first: HalfCheetah-v5 marginal steps per second (those a run twice as long adds, so
   that fixed costs cancel) of the env alone (random actions, no learning: the roof), of `ddpg.train` with --cuda
   (CUDA graphs, the default), --cuda --no-cudagraphs, --cuda --compile and the CPU path, and of the baseline below
   on the GPU (what a plain implementation such as CleanRL's does); the peak GPU memory of 1M-buffer runs of two
   lengths (equal when memory stays flat); and, last, the wall time and final evaluation of the README's first
   command, `python ddpg.py --env-id Pendulum-v1`, with --cuda and with --no-cuda;
4. memory: what a 1M-transition HalfCheetah-v5 replay buffer allocates against the raw size of its data, and the
   process's peak resident set size; the time and disk size of a checkpoint holding that buffer.

5. with --seeds K [K ...], only this: HalfCheetah-v5 seeds trained at once, on the GPU if there is one, as aggregate
   marginal training-phase steps per second (every seed's steps counted): one run alone; K seeds in one process
   (`population.py --seeds 1 ... K`); K single runs as separate processes started together (with cores / K threads
   each, as `sweep.py --jobs K` gives them); each against the one run of the same repeat, and, on a GPU, the peak GPU
   memory per seed of the one-process population.

6. with --shared, only this: the wall time and CPU time of whole `python ddpg.py --no-cuda` processes, Pendulum-v1 at
   the default settings and HalfCheetah-v5 at CleanRL's, each for --threads 1, 2, 4, ... up to the cores this process
   may use, on the machine as it is and then beside one busy process (a Python loop) per core, as when other runs, a
   browser or another user share the cores; the thread counts alternate (A B A B ...) within each case.

With --against FILE, it times whole training runs of ddpg.py and of another version of it (FILE, e.g. the
previous release's `git show REV:ddpg.py > /tmp/previous.py`) alternately, with the same arguments: a change's cost
in speed, measured side by side.

The baseline is what a plain eager implementation does: a numpy replay buffer whose batches are converted to
tensors at every sample, a Python loop over parameters for the soft update, torch's default Adam, and gradients
computed for the critic's weights during the actor step. It uses the same networks as ddpg.py.
"""

import argparse
import contextlib
import dataclasses
import gc
import importlib.machinery
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types

import gymnasium as gym
import numpy as np
import torch
import torch._dynamo
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from machine import available_cores, describe  # noqa: E402
from pendulum import run as run_pendulum  # noqa: E402
from seeds import ddpg_process, finish  # noqa: E402

import ddpg  # noqa: E402
import population  # noqa: E402

# One process compiles networks of several sizes (--compile variants): allow more compiled versions per forward than
# torch's default 8, past which it would silently time uncompiled networks, and fail loudly if even that is hit.
torch._dynamo.config.recompile_limit = 64
torch._dynamo.config.fail_on_recompile_limit_hit = True

HALFCHEETAH_OBS, HALFCHEETAH_ACT = 17, 6
BATCH, HIDDEN, POLICY_FREQUENCY = 256, 256, 2  # the common MuJoCo settings
GAMMA, TAU, LEARNING_RATE, EXPLORATION_NOISE = 0.99, 0.005, 3e-4, 0.1  # the common MuJoCo settings, too
BUFFER_1M = 1_000_000
WARMUP_STEPS = 50  # training steps of the untimed warm-up run
# What the SPS tables compare: ddpg.Args changes per variant; {BASELINE: device}: the baseline loop
BASELINE = "baseline"
AGAINST = "against"  # {AGAINST: module}: another version of ddpg.py, loaded from a file (--against)
CPU_VARIANTS = {"ddpg.py": {}, "ddpg.py --compile": {"compile": True}, "eager baseline": {BASELINE: "cpu"}}
GPU_VARIANTS = {"--cuda": {"cuda": True}, "--cuda --no-cudagraphs": {"cuda": True, "cudagraphs": False},
                "--cuda --compile": {"cuda": True, "compile": True}, "--no-cuda": {},
                "eager baseline --cuda": {BASELINE: "cuda"}}  # fmt: skip
ENV_ONLY = "env only (random actions)"  # a variant of the GPU table: the env stepped alone, the roof
BUSY_LOOP = "while True: pass"  # a process that keeps one core busy (table 6)
SHARED_RUNS = {  # table 6: the ddpg.py options of each run, beside --total-timesteps, --threads and --no-cuda
    "Pendulum-v1, the default settings": [],
    "HalfCheetah-v5, CleanRL's settings": ["--env-id", "HalfCheetah-v5", "--hidden-size", str(HIDDEN), "--batch-size",
                                           str(BATCH), "--learning-rate", str(LEARNING_RATE), "--noise-type",
                                           "gaussian", "--exploration-noise", str(EXPLORATION_NOISE),
                                           "--policy-frequency", str(POLICY_FREQUENCY), "--eval-episodes", "1"],
}  # fmt: skip
LOADS = ("quiet", "beside one busy process per core")
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS, GPU_RESULTS = os.path.join(HERE, "results.md"), os.path.join(HERE, "results-gpu.md")


# ----------------------------------------------------------------------------------------------------------------
# The baseline


class NumpyBuffer:
    """Replay buffer in numpy; every sampled batch is copied into new torch tensors."""

    def __init__(self, capacity, obs_dim, act_dim):
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, act_dim), dtype=np.float32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminations = np.zeros(capacity, dtype=np.float32)
        self.capacity, self.pos, self.size = capacity, 0, 0

    def add(self, obs, action, reward, next_obs, terminated):
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i], self.terminations[i] = (
            obs, action, reward, next_obs, terminated)  # fmt: skip
        self.pos, self.size = (self.pos + 1) % self.capacity, min(self.size + 1, self.capacity)

    def sample(self, n, device="cpu"):
        idx = np.random.randint(0, self.size, size=n)
        columns = (self.obs, self.actions, self.rewards, self.next_obs, self.terminations)
        return ddpg.Batch(*(torch.tensor(a[idx], device=device) for a in columns))


def baseline_agent(obs_dim, action_space, device="cpu"):
    act_dim = action_space.shape[0]
    actor, target_actor = (ddpg.Actor(obs_dim, action_space, HIDDEN).to(device) for _ in range(2))
    critic, target_critic = (ddpg.Critic(obs_dim, act_dim, HIDDEN).to(device) for _ in range(2))
    target_actor.load_state_dict(actor.state_dict())
    target_critic.load_state_dict(critic.state_dict())
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=LEARNING_RATE)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=LEARNING_RATE)
    return ddpg.Agent(actor, critic, target_actor, target_critic, actor_optimizer, critic_optimizer)


def baseline_update(agent, data, gamma, tau, update_actor):
    with torch.no_grad():
        y = data.rewards + gamma * (1 - data.terminations) * agent.target_critic(
            data.next_obs, agent.target_actor(data.next_obs))  # fmt: skip
    qf_loss = F.mse_loss(agent.critic(data.obs, data.actions), y)
    agent.critic_optimizer.zero_grad()
    qf_loss.backward()
    agent.critic_optimizer.step()
    if update_actor:
        actor_loss = -agent.critic(data.obs, agent.actor(data.obs)).mean()
        agent.actor_optimizer.zero_grad()
        actor_loss.backward()  # also fills the critic's .grad, which the next critic step zeroes
        agent.actor_optimizer.step()
        for net, target in ((agent.actor, agent.target_actor), (agent.critic, agent.target_critic)):
            for p, tp in zip(net.parameters(), target.parameters()):
                tp.data.copy_(tau * p.data + (1 - tau) * tp.data)


def baseline_train(env_id, total, learning_starts, device="cpu", seed=1):
    """The baseline loop: random warm-up, then noisy actions and one update per step; one evaluation episode.
    On a GPU, like CleanRL's --cuda: each action and each sampled batch crosses between host and device."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    env = gym.make(env_id)
    obs_dim, space = env.observation_space.shape[0], env.action_space
    agent, rb = baseline_agent(obs_dim, space, device), NumpyBuffer(total, obs_dim, space.shape[0])
    scale = torch.tensor((space.high - space.low) / 2, device=device)
    obs, _ = env.reset(seed=seed)
    for step in range(total):
        if step < learning_starts:
            action = space.sample()
        else:
            with torch.no_grad():
                a = agent.actor(torch.tensor(obs, dtype=torch.float32, device=device))
                a = a + torch.randn_like(a) * EXPLORATION_NOISE * scale
            action = a.cpu().numpy().clip(space.low, space.high)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rb.add(obs, action, reward, next_obs, terminated)
        obs = env.reset()[0] if terminated or truncated else next_obs
        if step >= learning_starts:
            baseline_update(agent, rb.sample(BATCH, device), GAMMA, TAU, update_actor=step % POLICY_FREQUENCY == 0)
    ddpg.evaluate(agent.actor, agent.critic, [env], GAMMA, torch.device(device))


# ----------------------------------------------------------------------------------------------------------------
# Measurements


class RecordMatmuls(TorchDispatchMode):
    """Records every matrix product (op, argument shapes and strides) that runs inside it."""

    MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.MATMULS:
            self.calls.append((func, [(a.shape, a.stride()) for a in args if isinstance(a, torch.Tensor)]))
        return func(*args, **(kwargs or {}))


def refuse(problem: str):
    """Bad input: one line, exit status 2, before any work."""
    print(f"bench.py: error: {problem}", file=sys.stderr)
    sys.exit(2)


def check_finished(status: int, what: str) -> None:
    """A timed run that stopped early (Ctrl-C, SIGTERM, a NaN) ran fewer steps than counted: no figure from it."""
    if status != 0:
        sys.exit(f"bench.py: error: {what} ended with exit status {status}: no figure from it")


def extra_time(extra: float, name: str, steps: int) -> float:
    """The time a run `steps` steps longer took more; where it took no longer (noise swallowed the steps), no figure."""
    if extra <= 0:
        sys.exit(f"bench.py: error: {name}: a run {steps} steps longer took no longer; give more --steps")
    return extra


def median_spread(values):
    return statistics.median(values), min(values), max(values)


def time_calls(fn, n):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def fill(rb: ddpg.ReplayBuffer) -> None:
    """Fill the whole buffer with random transitions (touching every page, as a full buffer would)."""
    rb.add(*(torch.randn(rb.capacity, *getattr(rb, name).shape[1:]) for name in ddpg.Batch._fields))


def measure_update(repeats, n):
    space = gym.spaces.Box(-1.0, 1.0, (HALFCHEETAH_ACT,), np.float32)
    args = ddpg.Args(hidden_size=HIDDEN, batch_size=BATCH, learning_rate=LEARNING_RATE)
    fast = ddpg.make_agent(HALFCHEETAH_OBS, space, args, torch.device("cpu"))
    compiled = ddpg.make_agent(HALFCHEETAH_OBS, space, args, torch.device("cpu"))
    base = baseline_agent(HALFCHEETAH_OBS, space)
    rb = ddpg.ReplayBuffer(100_000, HALFCHEETAH_OBS, HALFCHEETAH_ACT, torch.device("cpu"))
    ddpg.fast_path(compiled, rb, None, dataclasses.replace(args, compile=True), torch.device("cpu"))  # compiled
    fill(rb)
    nb = NumpyBuffer(100_000, HALFCHEETAH_OBS, HALFCHEETAH_ACT)
    for name in ddpg.Batch._fields:
        getattr(nb, name)[:] = getattr(rb, name).numpy()
    nb.size = 100_000

    with FlopCounterMode(display=False) as counter:
        ddpg.update(fast, rb, BATCH, GAMMA, TAU, update_actor=True)
    flops = counter.get_total_flops()
    with RecordMatmuls() as recorder:
        ddpg.update(fast, rb, BATCH, GAMMA, TAU, update_actor=True)
    operands = [(func, [torch.empty_strided(shape, stride).normal_() for shape, stride in shapes])
                for func, shapes in recorder.calls]  # fmt: skip

    def matmuls_only():
        for func, tensors in operands:
            func(*tensors)

    calls = {
        "matmuls": matmuls_only,
        "fast": lambda: ddpg.update(fast, rb, BATCH, GAMMA, TAU, update_actor=True),
        "compiled": lambda: ddpg.update(compiled, rb, BATCH, GAMMA, TAU, update_actor=True),
        "base": lambda: baseline_update(base, nb.sample(BATCH), GAMMA, TAU, update_actor=True),
    }
    for fn in calls.values():  # warm-up (and compilation)
        time_calls(fn, 20)
    times = {name: [] for name in calls}
    for _ in range(repeats):  # alternate, so that a slow moment of the machine hits all of them
        for name, fn in calls.items():
            times[name].append(time_calls(fn, n))
    matmul_flops = sum(2 * _mnk(func, [t.shape for t in tensors]) for func, tensors in operands)
    return {"flops": flops, "matmul_flops": matmul_flops, "num_matmuls": len(operands), "times": times}


def _mnk(func, shapes):
    a, b = shapes[-2], shapes[-1]  # addmm(bias, a, b) or mm(a, b)
    return a[0] * a[1] * b[1]


def training_args(env_id, total, **changes):
    """ddpg.Args of a benchmark run: the MuJoCo settings, one batch of random steps, one evaluation episode at the end,
    no checkpoint and no saved model (files the baseline does not write either)."""
    return ddpg.Args(env_id=env_id, total_timesteps=total, learning_starts=BATCH, batch_size=BATCH,
                     hidden_size=HIDDEN, policy_frequency=POLICY_FREQUENCY, learning_rate=LEARNING_RATE,
                     gamma=GAMMA, tau=TAU, noise_type="gaussian", exploration_noise=EXPLORATION_NOISE,
                     eval_frequency=total, eval_episodes=1, checkpoint_frequency=0, save_model=False,
                     **{"buffer_size": total, "cuda": False, **changes})  # fmt: skip


def measure_sps(env_id, repeats, steps, variants, marginal=False):
    """Steps per second of whole runs (set-up, random warm-up and the final evaluation included), or with `marginal`
    of the training phase alone; one of each variant in turn per repeat (A B C A B C ...).

    `variants` maps a name to the ddpg.Args fields it changes, to {BASELINE: device} for the baseline loop, or to
    ENV_ONLY. Whole runs count their fixed costs too (making the envs and the run, recording CUDA graphs, the
    evaluation at the end); `marginal` times each variant for `steps` training steps and for twice as many, and
    counts only the extra steps in the extra time, which leaves the fixed costs out.
    """
    total = BATCH + steps
    longest = total + steps if marginal else total

    def run(changes, total_timesteps):
        if changes == ENV_ONLY:
            env_only(env_id, total_timesteps)
        elif BASELINE in changes:
            baseline_train(env_id, total_timesteps, BATCH, device=changes[BASELINE])
        elif AGAINST in changes:
            other, same = changes[AGAINST], {k: v for k, v in changes.items() if k != AGAINST}
            args = dataclasses.replace(training_args(env_id, longest, **same), total_timesteps=total_timesteps)
            known = {field.name for field in dataclasses.fields(other.Args)}  # an older file may lack newer options
            with contextlib.redirect_stdout(io.StringIO()):
                out = other.train(other.Args(**{k: v for k, v in dataclasses.asdict(args).items() if k in known}))
            check_finished(out.get("status", 0), f"a timed {env_id} run")
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                args = training_args(env_id, longest, **changes)  # the same buffer for every run length
                out = ddpg.train(dataclasses.replace(args, total_timesteps=total_timesteps))
            check_finished(out.get("status", 0), f"a timed {env_id} run")

    def timed(changes, total_timesteps):
        start = time.perf_counter()
        run(changes, total_timesteps)
        return time.perf_counter() - start

    sps, threads = {name: [] for name in variants}, torch.get_num_threads()
    with tempfile.TemporaryDirectory() as cwd, contextlib.chdir(cwd):
        for changes in variants.values():  # warm-up: imports, first calls and compilation are paid here
            run(changes, BATCH + WARMUP_STEPS)
        for _ in range(repeats):
            for name, changes in variants.items():
                if marginal:
                    short = timed(changes, total)
                    sps[name].append(steps / extra_time(timed(changes, longest) - short, name, steps))
                else:
                    sps[name].append(total / timed(changes, total))
                progress(f"{env_id} {name}: {sps[name][-1]:.0f} SPS")
    torch.set_num_threads(threads)  # as it was: ddpg.train sets the thread count of the variant it ran
    return sps


def measure_shared(repeats, steps):
    """Table 6: {(run, load): {threads: [(wall s, CPU s) per repeat]}} of whole ddpg.py processes of
    ddpg.Args().learning_starts random steps and `steps` training steps, for each thread count, quiet and beside one
    busy process per core."""
    cores = available_cores()
    counts = [2**k for k in range(cores.bit_length())]
    total = ddpg.Args().learning_starts + steps
    times = {(run, load): {n: [] for n in counts} for load in LOADS for run in SHARED_RUNS}
    for _ in range(repeats):
        for load in LOADS:
            busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(cores * (load != LOADS[0]))]
            try:
                for run, options in SHARED_RUNS.items():
                    for n in counts:
                        options_n = [*options, "--total-timesteps", str(total), "--no-cuda", "--threads", str(n)]
                        times[run, load][n].append(timed_process(options_n))
                        wall, cpu = times[run, load][n][-1]
                        progress(f"{run}, {load}, --threads {n}: {wall:.1f} s, CPU {cpu:.1f} s")
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
    return times


def timed_process(options):
    """Wall time and CPU time (user + system) of one ddpg.py process with `options`, in a directory of its own."""
    with tempfile.TemporaryDirectory() as cwd:
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        finish([ddpg_process(cwd, *options)])
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def shared_report(repeats, steps) -> str:
    """Table 6 as markdown, with the machine, the command and the thread count ddpg.py picks here by default."""
    times = measure_shared(repeats, steps)
    counts = list(next(iter(times.values())))
    lines = [f"Machine: {describe()}.", f"Command: `python benchmarks/bench.py {' '.join(sys.argv[1:])}`; medians over "
             f"{repeats} alternating repeats, (min-max) after them.", "",
             f"### Whole `python ddpg.py --no-cuda --total-timesteps {ddpg.Args().learning_starts + steps}` processes: "
             f"wall time (min-max), CPU time, by --threads; the default is {ddpg.Args.threads}", "",
             "| run | the machine | " + " | ".join(f"--threads {n}" for n in counts) + " | "
             + " | ".join(f"--threads {n} / --threads 1" for n in counts[1:]) + " |",
             "|---|---|" + "---:|" * (2 * len(counts) - 1)]  # fmt: skip
    for (run, load), by_count in times.items():
        cells = [f"{fmt(*median_spread([w for w, _ in t]), unit=' s', digits=1)}, "
                 f"CPU {statistics.median(c for _, c in t):.1f} s" for t in by_count.values()]  # fmt: skip
        ratios = [fmt(*median_spread([a[0] / b[0] for a, b in zip(by_count[n], by_count[1])]), unit="x")
                  for n in counts[1:]]  # fmt: skip
        lines.append(f"| {run} | {load} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def measure_populations(sizes, repeats, steps, cuda):
    """Aggregate marginal steps per second of HalfCheetah-v5 seeds trained at once (table 5), in turn per repeat:
    {name: [SPS per repeat]}, and each one-process population's peak GPU memory per seed (bytes; CUDA only)."""
    total = BATCH + steps
    base = training_args("HalfCheetah-v5", total + steps, cuda=cuda)  # one buffer size for both run lengths
    ways = {"one run": (1, "population")}
    for k in sizes:
        ways |= {
            f"`population.py --seeds 1 ... {k}`, one process": (k, "population"),
            f"{k} processes at once": (k, "processes"),
        }

    def run(k, way, total_timesteps):
        args, seeds = dataclasses.replace(base, total_timesteps=total_timesteps), tuple(range(1, k + 1))
        if way == "processes":
            finish([ddpg_process(os.getcwd(), *options) for options in separate_runs(args, seeds)])
            return
        with contextlib.redirect_stdout(io.StringIO()):
            status = population.train_population(args, seeds)["status"]  # with one seed: exactly `ddpg.train`
        check_finished(status, f"--seeds {k}")

    def timed(k, way, total_timesteps):
        start = time.perf_counter()
        run(k, way, total_timesteps)
        return time.perf_counter() - start

    sps, memory, threads = {name: [] for name in ways}, {}, torch.get_num_threads()
    with tempfile.TemporaryDirectory() as cwd, contextlib.chdir(cwd):
        for k, way in ways.values():  # warm-up: imports, first calls and graph recordings are paid here
            run(k, way, BATCH + WARMUP_STEPS)
        for _ in range(repeats):
            for name, (k, way) in ways.items():
                short = timed(k, way, total)
                before = reset_gpu_peak() if cuda else 0
                sps[name].append(k * steps / extra_time(timed(k, way, total + steps) - short, name, steps))
                if cuda and way == "population":
                    memory[name] = max(memory.get(name, 0), (torch.cuda.max_memory_allocated() - before) / k)
                progress(f"HalfCheetah-v5 {name}: {sps[name][-1]:.0f} SPS")
    torch.set_num_threads(threads)  # as it was: ddpg.train sets the thread count of the run it made
    return sps, memory


def separate_runs(args, seeds):
    """The command-line options of the single runs that train what the population of `seeds` with `args` trains, one
    seed each, with cores / K threads each (as `sweep.py --jobs K` gives them)."""
    threads = max(1, available_cores() // len(seeds))
    return [cli_options(dataclasses.replace(args, seed=seed, threads=threads)) for seed in seeds]


def cli_options(args):
    """The ddpg.py command-line options that make `args`: those fields that differ from Args' defaults."""
    options = []
    for field in dataclasses.fields(args):
        value, flag = getattr(args, field.name), "--" + field.name.replace("_", "-")
        if value == field.default:
            continue
        if isinstance(value, bool):
            options.append(flag if value else f"--no-{flag[2:]}")
        else:
            options += [flag, *map(str, value if isinstance(value, tuple) else [value])]
    return options


def populations_report(sizes, repeats, steps, cuda) -> str:
    """Table 5 as markdown, with the machine and the command."""
    sps, memory = measure_populations(sizes, repeats, steps, cuda)
    device = torch.cuda.get_device_name() if cuda else f"the CPU, {available_cores()} cores"
    lines = [f"Machine: {describe()}.", f"Command: `python benchmarks/bench.py {' '.join(sys.argv[1:])}`; medians over "
             f"{repeats} alternating repeats, (min-max) after them.", "",
             f"### Many seeds at once, HalfCheetah-v5 on {device}: aggregate training-phase env steps per second", "",
             "Every seed's steps counted; marginal, as in the GPU table: the extra steps of runs twice as long, over",
             "the extra time.", "",
             "| seeds trained at once | aggregate SPS | / one run, per repeat | peak GPU memory per seed |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for name, values in sps.items():
        ratio = median_spread([a / b for a, b in zip(values, sps["one run"])])
        peak = f"{memory[name] / 2**20:.1f} MiB" if name in memory else "-"
        lines.append(f"| {name} | {fmt(*median_spread(values), digits=0)} | {fmt(*ratio, unit='x')} | {peak} |")
    return "\n".join(lines)


def progress(line):
    """A measurement as it comes, on stderr: a benchmark cut short still shows what it measured."""
    print(line, file=sys.stderr, flush=True)


def env_only(env_id, steps):
    """The training env stepped with uniformly random actions, nothing learned: what no learner can exceed."""
    runner = ddpg.EnvRunner(env_id, num_envs=1, seed=1)
    for _ in range(steps):
        runner.step(runner.envs.action_space.sample())
    runner.close()


def reset_gpu_peak():
    """Free what can be freed and restart the peak count; returns the GPU memory still allocated, to subtract."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def measure_gpu_memory(steps):
    """Peak GPU memory of HalfCheetah-v5 runs with a 1M-transition buffer, for two run lengths (flat: equal)."""
    peaks = {}
    with tempfile.TemporaryDirectory() as cwd, contextlib.chdir(cwd), contextlib.redirect_stdout(io.StringIO()):
        for total in (BATCH + steps, BATCH + 2 * steps):
            before = reset_gpu_peak()
            ddpg.train(training_args("HalfCheetah-v5", total, buffer_size=BUFFER_1M, cuda=True))
            peaks[total] = torch.cuda.max_memory_allocated() - before
            progress(f"peak GPU memory after {total} steps: {peaks[total] / 2**20:.1f} MiB")
    return peaks


def measure_pendulum_wall(repeats):
    """Wall time and final evaluation of the README's first command, whole processes, with --cuda and --no-cuda
    alternately."""
    walls, finals = {"--cuda": [], "--no-cuda": []}, {"--cuda": [], "--no-cuda": []}
    for _ in range(repeats):
        for flag in walls:
            result = run_pendulum(seed=1, extra=["--env-id", "Pendulum-v1", flag])
            walls[flag].append(result["wall"])
            finals[flag].append(result["final"])
            progress(f"Pendulum-v1 {flag}: {walls[flag][-1]:.1f} s, final evaluation {finals[flag][-1]:.1f}")
    return walls, finals


def measure_memory():
    data_bytes = BUFFER_1M * 4 * (2 * HALFCHEETAH_OBS + HALFCHEETAH_ACT + 2)
    rb = ddpg.ReplayBuffer(BUFFER_1M, HALFCHEETAH_OBS, HALFCHEETAH_ACT, torch.device("cpu"))
    allocated = sum(getattr(rb, name).untyped_storage().nbytes() for name in ddpg.Batch._fields)
    fill(rb)
    space = gym.spaces.Box(-1.0, 1.0, (HALFCHEETAH_ACT,), np.float32)
    agent = ddpg.make_agent(HALFCHEETAH_OBS, space, ddpg.Args(hidden_size=HIDDEN), torch.device("cpu"))
    ddpg.update(agent, rb, BATCH, GAMMA, TAU, update_actor=True)  # so that Adam holds its moments
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, ddpg.CHECKPOINT_FILE)
        start = time.perf_counter()
        ddpg.save_atomic({"agent": ddpg.agent_state(agent), "replay_buffer": ddpg.buffer_state(rb)}, path)
        save_s = time.perf_counter() - start
        size = os.path.getsize(path)
        start = time.perf_counter()
        torch.load(path, weights_only=True)
        load_s = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return {"data": data_bytes, "allocated": allocated, "save_s": save_s, "load_s": load_s, "size": size,
            "peak_rss": peak_rss}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Report


def fmt(median, low, high, unit="", digits=2):
    return f"{median:.{digits}f}{unit} ({low:.{digits}f}-{high:.{digits}f})"


def sps_table(sps, reference) -> list[str]:
    """Markdown rows: steps per second of every variant per env, and each variant's ratio to `reference`."""
    names = list(next(iter(sps.values())))
    others = [name for name in names if name != reference]
    lines = ["| env | " + " | ".join(names) + " | " + " | ".join(f"{n} / {reference}" for n in others) + " |",
             "|---|" + "---:|" * (len(names) + len(others))]  # fmt: skip
    for env_id, runs in sps.items():
        ratios = [median_spread([a / b for a, b in zip(runs[name], runs[reference])]) for name in others]
        lines.append(f"| {env_id} | " + " | ".join(fmt(*median_spread(runs[n]), digits=0) for n in names) + " | "
                     + " | ".join(fmt(*r, unit="x") for r in ratios) + " |")  # fmt: skip
    return lines


def update_report(update) -> list[str]:
    t = {k: median_spread([x * 1e3 for x in v]) for k, v in update["times"].items()}
    matmul_rate = update["matmul_flops"] / (t["matmuls"][0] / 1e3) / 1e9
    rate = {k: update["flops"] / (t[k][0] / 1e3) / 1e9 for k in ("fast", "compiled", "base")}
    ratios = [b / f for b, f in zip(update["times"]["base"], update["times"]["fast"])]
    lines = [
        "",
        f"### One full update (critic + actor + targets), batch {BATCH}, {HIDDEN}x{HIDDEN}, HalfCheetah-v5 sizes",
        "",
        f"{update['flops'] / 1e6:.0f} MFLOP per update, {update['matmul_flops'] / 1e6:.0f} MFLOP of it in "
        f"{update['num_matmuls']} matrix products.",
        "",
        "| | time per update (ms) | achieved GFLOP/s | fraction of the matmul rate for these shapes |",
        "|---|---:|---:|---:|",
        f"| the update's matrix products alone, back to back | {fmt(*t['matmuls'])} | {matmul_rate:.0f} | 100% |",
    ]
    for key, label in (("fast", "ddpg.py `update`"), ("compiled", "ddpg.py `update`, `--compile`"),
                       ("base", "eager baseline")):  # fmt: skip
        lines.append(f"| {label} | {fmt(*t[key])} | {rate[key]:.0f} | {rate[key] / matmul_rate:.0%} |")
    return lines + ["", f"Baseline time / ddpg.py time, per repeat: median {fmt(*median_spread(ratios), unit='x')}."]


def gpu_report(gpu) -> list[str]:
    mib, (walls, finals) = 2**20, gpu["pendulum"]
    wall = {flag: median_spread(times) for flag, times in walls.items()}
    ratios = median_spread([c / n for c, n in zip(walls["--cuda"], walls["--no-cuda"])])
    (runs,) = gpu["sps"].values()
    over_baseline = median_spread([a / b for a, b in zip(runs["--cuda"], runs["eager baseline --cuda"])])
    return [
        "", f"### On the GPU ({torch.cuda.get_device_name()}): training-phase env steps per second", "",
        "Marginal: the extra steps of a run twice as long, over the extra time (setup, recording the CUDA graphs",
        "and the final evaluation cancel out).", "",
        *sps_table(gpu["sps"], reference=ENV_ONLY), "",
        f"`--cuda` / eager baseline `--cuda`, per repeat: median {fmt(*over_baseline, unit='x')}.", "",
        "Peak GPU memory (`torch.cuda.max_memory_allocated`), HalfCheetah-v5, 1M-transition buffer: "
        + ", ".join(f"{peak / mib:.1f} MiB after {steps} steps" for steps, peak in gpu["memory"].items()) + ".",
        "",
        "`python ddpg.py --env-id Pendulum-v1` (10k steps), whole process: "
        + ", ".join(f"`{flag}` {fmt(*w, unit=' s', digits=1)}" for flag, w in wall.items())
        + f"; `--cuda` / `--no-cuda` {fmt(*ratios, unit='x')}. Final evaluations: "
        + "; ".join(f"`{flag}` " + ", ".join(f"{r:.1f}" for r in returns) for flag, returns in finals.items())
        + ".",
    ]  # fmt: skip


def against_report(path: str, repeats: int, steps: int) -> str:
    """Steps per second of whole runs of ddpg.py and of the ddpg.py in `path`, alternately, on the CPU."""
    loader = importlib.machinery.SourceFileLoader("other_ddpg", path)  # any file name, .py or not
    other = types.ModuleType(loader.name)
    other.__file__ = path  # ddpg.py names its experiments after its own file
    try:
        loader.exec_module(other)
        other.Args, other.train  # noqa: B018 (what is timed)
    except Exception as e:
        refuse(f"--against {path}: not a ddpg.py that loads ({type(e).__name__}: {str(e).splitlines()[0]})")
    threads = {"threads": ddpg.Args.threads}  # both files with this one's default: only the code differs
    variants = {"ddpg.py": threads, path: {AGAINST: other, **threads}}
    sps = {env: measure_sps(env, repeats, steps, variants) for env in ("Pendulum-v1", "HalfCheetah-v5")}
    return "\n".join([f"Machine: {describe()}.", f"Command: `python benchmarks/bench.py {' '.join(sys.argv[1:])}`; "
                      f"medians over {repeats} alternating repeats, (min-max) after them.", "",
                      *sps_table(sps, reference=path)])  # fmt: skip


def report(update, sps, threads_sps, gpu, memory, repeats, sps_repeats, command) -> str:
    """The markdown report; `update` and `sps` are None when only the GPU machine's tables were measured."""
    lines = [
        f"Machine: {describe(torch.get_num_threads())}.",
        f"Command: `{command}`; medians over alternating repeats ({repeats} for one update, {sps_repeats} for "
        "whole runs), (min-max) after them.",
    ]
    if update:
        lines += update_report(update)
    if sps:
        lines += ["", f"### Env steps per second of whole runs (policy frequency {POLICY_FREQUENCY}, 1 env, CPU; "
                  "set-up, random warm-up and final evaluation included)", "",
                  *sps_table(sps, reference="eager baseline")]  # fmt: skip
    lines += [
        "",
        f"### CPU threads (`--threads N`; the default is {ddpg.Args.threads})",
        "",
        *sps_table(threads_sps, reference="--threads 1"),
    ]
    if gpu:
        lines += gpu_report(gpu)
    mib = 2**20
    lines += [
        "",
        "### Memory and checkpoints (1M-transition HalfCheetah-v5 replay buffer)",
        "",
        "| | |",
        "|---|---:|",
        f"| raw data: 1M x (17 + 6 + 1 + 17 + 1) float32 | {memory['data'] / mib:.1f} MiB |",
        f"| allocated by `ReplayBuffer` | {memory['allocated'] / mib:.1f} MiB |",
        f"| checkpoint file (full buffer, {HIDDEN}x{HIDDEN} networks and targets, Adam states) | "
        f"{memory['size'] / mib:.1f} MiB |",
        f"| checkpoint write (atomic) / read | {memory['save_s']:.2f} s / {memory['load_s']:.2f} s |",
        f"| peak RSS of this benchmark process | {memory['peak_rss'] / mib:.0f} MiB |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps (a smoke test); writes nothing")
    parser.add_argument(
        "--gpu-only", action="store_true", help="on a GPU machine, measure only the thread and GPU tables, and memory"
    )
    parser.add_argument("--repeats", type=int, help="repeats of the update timing (7; --quick 2); whole runs: half")
    parser.add_argument("--steps", type=int, help="training steps of a timed run (2000; --quick 300)")
    parser.add_argument("--against", metavar="FILE", help="time ddpg.py's training against this other ddpg.py only")
    parser.add_argument(
        "--seeds", type=int, nargs="+", metavar="K", help="measure only K seeds at once (one process; K processes)"
    )
    parser.add_argument(
        "--shared", action="store_true", help="measure only thread counts, quiet and beside one busy process per core"
    )
    opts = parser.parse_args()
    for problem in (
        opts.against and not os.path.isfile(opts.against) and f"--against {opts.against}: no such file",
        opts.gpu_only and not torch.cuda.is_available() and "--gpu-only needs a CUDA device; none is available",
        opts.repeats is not None and opts.repeats < 1 and f"--repeats must be positive, got {opts.repeats}",
        opts.steps is not None and opts.steps < 1 and f"--steps must be positive, got {opts.steps}",
        opts.seeds and min(opts.seeds) < 2 and f"--seeds: counts of 2 or more seeds, got {min(opts.seeds)}",
        opts.seeds and opts.against and "--seeds and --against: each measures only a table of its own",
        opts.seeds and opts.gpu_only and "--seeds and --gpu-only: --seeds measures only a table of its own",
        opts.shared
        and (opts.seeds or opts.against or opts.gpu_only)
        and "--shared measures only a table of its own: not with --seeds, --against or --gpu-only",
        not (opts.seeds or opts.against or opts.shared)
        and ddpg.find_cpp_compiler() is None
        and "the --compile rows need a C++ compiler on PATH",
    ):
        if problem:
            refuse(problem)
    repeats, n_updates, steps = (2, 20, 300) if opts.quick else (7, 100, 2000)
    repeats, steps = opts.repeats or repeats, opts.steps or steps
    torch.set_num_threads(ddpg.Args.threads)  # ddpg.py's default, for every measurement and the header
    sps_repeats = max(repeats // 2, 2)
    if opts.against:
        print(against_report(opts.against, sps_repeats, steps))
        return
    if opts.seeds:
        print(populations_report(opts.seeds, sps_repeats, steps, torch.cuda.is_available()))
        return
    if opts.shared:
        print(shared_report(sps_repeats, steps))
        return
    update = sps = None
    gpu = {}
    if torch.cuda.is_available():  # first: on a GPU machine, the figures it is there for
        variants = {ENV_ONLY: ENV_ONLY, **GPU_VARIANTS}
        gpu = {"sps": {"HalfCheetah-v5": measure_sps("HalfCheetah-v5", sps_repeats, steps, variants, marginal=True)},
               "memory": measure_gpu_memory(steps)}  # fmt: skip
    if not opts.gpu_only:
        update = measure_update(repeats, n_updates)
        sps = {env: measure_sps(env, sps_repeats, steps, CPU_VARIANTS) for env in ("Pendulum-v1", "HalfCheetah-v5")}
    cores = available_cores()
    threads = {f"--threads {n}": {"threads": n} for n in (2**k for k in range(cores.bit_length()))}
    threads_sps = {"HalfCheetah-v5": measure_sps("HalfCheetah-v5", sps_repeats, steps, threads)}
    memory = measure_memory()
    if gpu:  # last: the slowest part, whole processes
        gpu["pendulum"] = measure_pendulum_wall(sps_repeats)
    command = " ".join(["python", "benchmarks/bench.py", *sys.argv[1:]])
    text = report(update, sps, threads_sps, gpu, memory, repeats, sps_repeats, command)
    print(text)
    if not opts.quick:
        path = GPU_RESULTS if opts.gpu_only else RESULTS
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        print(f"written to {path}")


if __name__ == "__main__":
    main()
