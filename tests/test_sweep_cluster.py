"""The sweep on a real two-node Ray cluster on this machine: the head on the host, the second node in a network
namespace of its own, joined to the host by a veth pair with link-local addresses, the file system shared. The second
node's link is cut while its run trains: the sweep must go on, retry that run on the head from its checkpoint, and end
as the local pool does. Needs root (network namespaces) and iproute2's `ip`; skipped elsewhere."""

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import pytest

from tests.conftest import subprocess_env
from tests.test_cli import SCRIPT
from tests.test_sweep_ray import SWEEP, logged, start_sweep

pytestmark = pytest.mark.xdist_group("ray")  # pytest-xdist runs the tests that start Ray on one worker, in turn

RUN = ["--total-timesteps", "10000", "--learning-starts", "300", "--batch-size", "64", "--hidden-size", "32",
       "--eval-frequency", "2500", "--eval-episodes", "2", "--checkpoint-frequency", "500", "--no-cuda"]  # fmt: skip
RAY = [sys.executable, "-m", "ray.scripts.scripts"]
# Token authentication, as sweep.py's local instance uses, with a token of the cluster's own: a fresh machine has no
# ~/.ray/auth_token for `ray start` to read
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
# Ray's settings for both nodes, from the environment of `ray start` (the sweep keeps Ray's defaults):
RAY_SETTINGS = {
    # the head marks a node dead after 3 missed health checks 0.5 s apart (Ray's defaults: 5, 3 s apart)
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
    # a node notices a lost head within a second (gRPC keepalive; defaults: 5 min, then 2 min) and gives up on it
    # after 1 s (default 60 s): its raylet exits, its workers with it, and so does the run there
    "RAY_grpc_client_keepalive_time_ms": "500",
    "RAY_grpc_client_keepalive_timeout_ms": "500",
    "RAY_gcs_rpc_server_reconnect_timeout_s": "1",
    # Ray's workers, and so the runs they start, at the priority of the local pool's runs (default: nice 15)
    "RAY_worker_niceness": "0",
}
# 169.254.1.0 - 169.254.168.255 in /30 blocks: link-local, and clear of 169.254.169.254 (cloud metadata services)
LINK_LOCAL_BLOCKS = 168 * 64
TIMEOUT_S = 300  # each wait below: a bound for a machine loaded by other work, not an expected time
WAIT_FOR_TWO_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
while sum(node["Alive"] for node in ray.nodes()) < 2:
    time.sleep(0.1)
"""


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def session_pids(sid):
    """Processes of the session `sid` (Ray's processes keep the session of the `ray start` that made them)."""
    pids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            if int(open(stat).read().rsplit(")", 1)[1].split()[3]) == sid:
                pids.append(int(stat.split("/")[2]))
        except (OSError, IndexError, ValueError):  # ended meanwhile
            continue
    return pids


def namespace_pids(namespace):
    return [int(pid) for pid in ip("netns", "pids", namespace, check=False).stdout.split()]


def kill_all(list_pids):
    """SIGKILL to every process `list_pids()` names, until it names none (or a few seconds went by)."""
    deadline = time.time() + 10
    while (pids := list_pids()) and time.time() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def wait_for(condition, proc, what):
    deadline = time.time() + TIMEOUT_S
    while not (result := condition()):
        assert proc.poll() is None and time.time() < deadline, f"{what}: {proc.communicate()}"
        time.sleep(0.1)
    return result


@pytest.fixture
def two_nodes():
    """A Ray head on the host and a second node in a network namespace; torn down whatever happens."""
    pytest.importorskip("ray")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("making a network namespace needs root and iproute2's ip")
    tag = f"ddpg{os.getpid()}"
    namespace, host_link, node_link = tag, f"{tag}h", f"{tag}n"
    block = os.getpid() % LINK_LOCAL_BLOCKS
    subnet, first = f"169.254.{1 + block // 64}", block % 64 * 4
    host_ip, node_ip = f"{subnet}.{first + 1}", f"{subnet}.{first + 2}"
    made = ip("netns", "add", namespace, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # one run on each node, as on the local pool with --jobs 2
    env = subprocess_env(**RAY_AUTH, **RAY_SETTINGS)
    head = None
    try:
        ip("link", "add", host_link, "type", "veth", "peer", "name", node_link)
        ip("link", "set", node_link, "netns", namespace)
        ip("addr", "add", f"{host_ip}/30", "dev", host_link)
        ip("link", "set", host_link, "up")
        ip("-n", namespace, "addr", "add", f"{node_ip}/30", "dev", node_link)
        ip("-n", namespace, "link", "set", node_link, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        port, client_port, agent_port = free_ports(3)  # the head's ports on the host that could clash with others
        address = f"{host_ip}:{port}"
        # in a session of its own, which Ray's processes keep: the teardown finds them by it
        head = subprocess.Popen(
            [*RAY, "start", "--head", f"--node-ip-address={host_ip}", f"--port={port}", f"--num-cpus={threads}",
             f"--ray-client-server-port={client_port}", f"--dashboard-agent-listen-port={agent_port}",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        assert head.wait(timeout=TIMEOUT_S) == 0, head.stdout.read()
        node = subprocess.run(
            ["ip", "netns", "exec", namespace, *RAY, "start", f"--address={address}", f"--node-ip-address={node_ip}",
             f"--num-cpus={threads}", "--disable-usage-stats"],
            env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
        assert node.returncode == 0, node.stdout + node.stderr
        subprocess.run([sys.executable, "-c", WAIT_FOR_TWO_NODES, address], env=env, check=True, timeout=TIMEOUT_S)
        yield SimpleNamespace(address=address, namespace=namespace, host_link=host_link, node_ip=node_ip,
                              threads=threads, env=env)  # fmt: skip
    finally:
        kill_all(lambda: namespace_pids(namespace))
        if head:
            kill_all(lambda: session_pids(head.pid))
        ip("link", "del", host_link, check=False)  # its peer goes with it
        ip("netns", "del", namespace, check=False)
        shutil.rmtree(temp_dir, ignore_errors=True)


def namespace_run(namespace):
    """(pid, seed) of the ddpg.py process running in the network namespace, if there is one."""
    for pid in namespace_pids(namespace):
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")
        except OSError:  # ended meanwhile
            continue
        if args[1:2] == [SCRIPT] and "--seed" in args:
            return pid, int(args[args.index("--seed") + 1])
    return None


def test_the_sweep_survives_a_node_cut_off_and_ends_as_the_local_pool(tmp_path, two_nodes):
    common = ["--envs", "Pendulum-v1", "--seeds", "1", "2", "--exp-name", "cut"]
    local = start_sweep(tmp_path / "local", *common, "--jobs", "2", "--", *RUN)  # the reference, meanwhile
    os.makedirs(tmp_path / "cluster")
    cluster = subprocess.Popen(
        [sys.executable, SWEEP, *common, "--ray-address", two_nodes.address, "--cpus-per-run", str(two_nodes.threads),
         "--", *RUN],
        cwd=tmp_path / "cluster", env=subprocess_env(**RAY_AUTH),  # and Ray's default settings
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, seed = wait_for(lambda: namespace_run(two_nodes.namespace), cluster, "no run on the second node")
        checkpoint = str(tmp_path / "cluster" / "runs" / f"Pendulum-v1__cut__{seed}__*" / "checkpoint.pt")
        wait_for(lambda: glob.glob(checkpoint), cluster, "no checkpoint on the second node")
        ip("link", "set", two_nodes.host_link, "down")  # the second node is cut off while its run trains
        out, err = cluster.communicate(timeout=TIMEOUT_S)
        local_out, local_err = local.communicate(timeout=TIMEOUT_S)
    finally:
        for proc in (cluster, local):
            proc.kill()
    assert cluster.returncode == 0 and "2 of 2 runs finished" in out, out + err
    assert "Ray, 2 nodes with " in open(tmp_path / "cluster" / "runs" / "sweep-logs" / "cut.machine.txt").read()
    assert f"seed {seed} was lost with its node {two_nodes.node_ip}, which Ray marked dead: retry 1 of 3" in out
    # the cut-off run stopped (with its node's Ray processes) before it finished; its retry went on from a checkpoint
    assert f"Pendulum-v1 seed {seed}: finished (resume, " in out
    log = open(tmp_path / "cluster" / "runs" / "sweep-logs" / f"Pendulum-v1__cut__{seed}.log").read()
    assert log.count("resuming runs/Pendulum-v1__cut__") == 1

    assert local.returncode == 0, local_out + local_err
    # one run directory per seed, and every logged value at every step the same, final evaluations included
    assert logged(tmp_path / "cluster", "cut") == logged(tmp_path / "local", "cut")
