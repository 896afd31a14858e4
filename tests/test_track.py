"""--track: what reaches Weights & Biases, run offline with the real wandb package, read back from its run files."""

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import pytest
import torch

import ddpg
import population
from tests.conftest import subprocess_env
from tests.envs import HORIZON
from tests.test_checkpoints import ctrl_c_at_each_evaluation
from tests.test_cli import SCRIPT, assert_refused_in_one_line, run_cli, scalars

RUN = dict(total_timesteps=400, learning_starts=100, batch_size=64, hidden_size=32, eval_frequency=300,
           eval_episodes=1, checkpoint_frequency=0, cuda=False, track=True)  # fmt: skip
EPISODE_ENDS, EVALUATIONS = [200, 400], [300, 400]  # steps of the 200-step Pendulum episodes and evaluations
# a run of seconds: four episodes of HORIZON steps, evaluated after the second and the fourth
COUNTER_RUN = dict(RUN, env_id="tests.envs:Counter-v0", total_timesteps=4 * HORIZON, learning_starts=2 * HORIZON,
                   batch_size=HORIZON, eval_frequency=2 * HORIZON)  # fmt: skip
COUNTER_EPISODE_ENDS, COUNTER_EVALUATIONS = [HORIZON * k for k in (1, 2, 3, 4)], [2 * HORIZON, 4 * HORIZON]

# An offline run's `run-<id>.wandb` file is wandb's transaction log: a 7-byte file header, then 32 KiB blocks of
# chunks, each with a (crc32, length, type) header; a record's protobuf (wandb_internal_pb2.Record) is one FULL chunk
# or FIRST, MIDDLE..., LAST chunks. wandb 0.31 ships no reader for it, hence this one (checksums verified).
FILE_HEADER, CHUNK_HEADER, BLOCK = struct.Struct("<4sHB"), struct.Struct("<IHB"), 32 * 1024
FULL, LAST = 1, 4


def wandb_records(path):
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert FILE_HEADER.unpack_from(data)[:2] == (b":W&B", 0xBEE1)
    pos, payload = FILE_HEADER.size, b""
    while pos + CHUNK_HEADER.size <= len(data):
        if BLOCK - pos % BLOCK < CHUNK_HEADER.size:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0:  # zero padding at the end of the file
            break
        chunk = data[pos + CHUNK_HEADER.size : pos + CHUNK_HEADER.size + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"{path}: bad checksum at {pos}"
        pos += CHUNK_HEADER.size + length
        payload += chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            payload = b""
            yield record


@dataclasses.dataclass
class OfflineRun:
    """What one process sent to W&B."""

    run: object  # wandb_internal_pb2.RunRecord
    config: dict
    metrics: list  # MetricRecords (define_metric)
    rows: list  # history rows as {key: value}
    exit_code: int | None


def read_offline_runs(wandb_dir):
    """The offline runs under `wandb_dir`, in the order they started."""
    import wandb

    wandb.teardown()  # a process's wandb service writes its last records when it ends: end it, as exiting would
    runs = []
    for path in sorted(glob.glob(os.path.join(wandb_dir, "wandb", "offline-run-*", "run-*.wandb"))):
        found = OfflineRun(None, {}, [], [], None)
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                found.run = record.run
                found.config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
            elif kind == "config":
                found.config.update({item.key: json.loads(item.value_json) for item in record.config.update})
            elif kind == "metric":
                found.metrics.append(record.metric)
            elif kind == "history":
                items = record.history.item
                found.rows.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in items})
            elif kind == "exit":
                found.exit_code = record.exit.exit_code
        runs.append(found)
    return sorted(runs, key=lambda found: found.run.start_time.ToNanoseconds())


def steps_of(rows, key):
    return [row["global_step"] for row in rows if key in row]


@pytest.fixture
def offline(in_tmp, monkeypatch):
    pytest.importorskip("wandb")  # CI installs it (requirements-track.txt)
    monkeypatch.setenv("WANDB_MODE", "offline")  # no account, no network
    monkeypatch.setenv("WANDB_DIR", str(in_tmp))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_RUN_GROUP", "sweep-1")  # as benchmarks/sweep.py sets it for the runs of one sweep
    return in_tmp


def test_tracked_run_sends_arguments_scalars_and_videos(offline):
    args = ddpg.Args(**RUN, capture_video=True)
    result = ddpg.train(args)
    assert result["status"] == 0
    (sent,) = read_offline_runs(offline)

    assert sent.run.display_name == os.path.basename(result["run_dir"])
    assert sent.run.run_group == "sweep-1"
    assert sent.run.project == "ddpg.py"
    assert {k: v for k, v in sent.config.items() if k != "_wandb"} == dataclasses.asdict(args)
    assert [(m.glob_name, m.step_metric) for m in sent.metrics] == [("*", "global_step")]
    assert sent.exit_code == 0

    # every TensorBoard scalar, under its own tag, at the same env steps, with the same values
    _, logged = scalars(result["run_dir"])
    for tag, events in logged.items():
        assert steps_of(sent.rows, tag) == [e.step for e in events], tag
        assert [row[tag] for row in sent.rows if tag in row] == pytest.approx([e.value for e in events]), tag
    assert steps_of(sent.rows, "charts/episodic_return") == EPISODE_ENDS
    assert steps_of(sent.rows, "eval/episodic_return") == EVALUATIONS
    for tag in (ddpg.EVAL_Q_TAG, ddpg.EVAL_DISCOUNTED_TAG):  # the critic's estimate and the return beside it
        assert steps_of(sent.rows, tag) == EVALUATIONS, tag
    final = [row["eval/episodic_return"] for row in sent.rows if "eval/episodic_return" in row][-1]
    assert final == pytest.approx(result["eval_returns"].mean())  # the final one

    # each evaluation's video, byte for byte (the last one is written only when the eval env closes)
    videos = sorted(glob.glob(os.path.join(result["run_dir"], ddpg.VIDEO_DIR, "*.mp4")))
    assert len(videos) == len(EVALUATIONS)
    sent_videos = [row for row in sent.rows if "videos/eval/sha256" in row]
    assert steps_of(sent.rows, "videos/eval/sha256") == EVALUATIONS  # each sent at its own evaluation's step
    assert sorted(row["videos/eval/sha256"] for row in sent_videos) == sorted(
        hashlib.sha256(open(path, "rb").read()).hexdigest() for path in videos
    )


def test_interrupted_and_resumed_run_goes_on_in_the_same_wandb_run(offline, monkeypatch):
    real_evaluate = ctrl_c_at_each_evaluation(monkeypatch)
    cut = ddpg.train(ddpg.Args(**COUNTER_RUN))
    assert cut["status"] == 128 + signal.SIGINT
    monkeypatch.setattr(ddpg, "evaluate", real_evaluate)
    checkpoint = torch.load(os.path.join(cut["run_dir"], ddpg.CHECKPOINT_FILE), weights_only=True)
    assert checkpoint["global_step"] == COUNTER_EVALUATIONS[0]

    # a run trained without --track has no W&B run id: resumed with --track, it goes on in a new W&B run
    older_dir = shutil.copytree(cut["run_dir"], "older")
    run_id, checkpoint["wandb_run_id"] = checkpoint["wandb_run_id"], None
    torch.save(checkpoint, os.path.join(older_dir, ddpg.CHECKPOINT_FILE))

    # wandb syncs the event files whose names carry a time (whole seconds) from its run's start on; a resumed
    # process starts seconds after the interrupted one wrote its file, as here, so that file is not sent again
    time.sleep(1)
    resumed = ddpg.train(ddpg.Args(resume=(cut["run_dir"],)))  # --track comes from the saved arguments
    assert resumed["status"] == 0
    assert ddpg.train(ddpg.Args(resume=(older_dir,)))["status"] == 0
    first, second, older = read_offline_runs(offline)
    assert older.run.run_id not in ("", first.run.run_id) and older.exit_code == 0
    assert first.run.run_id == second.run.run_id == run_id
    assert second.run.display_name == os.path.basename(cut["run_dir"]) and second.run.run_group == "sweep-1"
    assert (first.exit_code, second.exit_code) == (128 + signal.SIGINT, 0)

    # the curves join: each process sent its own steps, none twice, all of them together
    assert steps_of(first.rows, "charts/episodic_return") == COUNTER_EPISODE_ENDS[:2]
    assert steps_of(second.rows, "charts/episodic_return") == COUNTER_EPISODE_ENDS[2:]
    assert steps_of(first.rows, "eval/episodic_return") == COUNTER_EVALUATIONS[:1]
    assert steps_of(second.rows, "eval/episodic_return") == COUNTER_EVALUATIONS[1:]
    _, logged = scalars(cut["run_dir"])
    for tag, events in logged.items():
        assert steps_of(first.rows, tag) + steps_of(second.rows, tag) == [e.step for e in events], tag


def fake_wandb(tmp_path, code: str) -> dict:
    """The environment of a ddpg.py process in which `import wandb` runs `code` instead of importing wandb."""
    fake = tmp_path / "fake" / "wandb"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(code)
    return subprocess_env(str(fake.parent))


def test_track_without_wandb_is_refused_in_one_line(tmp_path):
    env = fake_wandb(tmp_path, "raise ImportError('No module named wandb')\n")  # as where it is not installed
    result = run_cli(tmp_path, "--track", "--no-cuda", env=env)
    assert_refused_in_one_line(result, f"--track needs wandb, which is not installed: {ddpg.INSTALL_WANDB}", tmp_path)


def test_track_online_without_a_wandb_key_is_refused_in_one_line(tmp_path):
    pytest.importorskip("wandb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # no key, not offline
    env.update(HOME=str(tmp_path), PYTHONPATH=subprocess_env()["PYTHONPATH"])
    result = subprocess.run([sys.executable, SCRIPT, "--track", "--no-cuda"], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True)  # fmt: skip
    assert_refused_in_one_line(result, "--track: No API key configured. Use `wandb login`", tmp_path)
    assert "WANDB_MODE=offline" in result.stderr


def test_a_run_without_track_never_imports_wandb(tmp_path):
    env = fake_wandb(tmp_path, "raise SystemExit('wandb was imported')\n")  # no `except ImportError` can hide it
    result = run_cli(tmp_path, "--total-timesteps", "2", "--learning-starts", "1", "--batch-size", "1",
                     "--eval-episodes", "1", "--checkpoint-frequency", "1", "--capture-video", "--save-model",
                     "--no-cuda", env=env)  # fmt: skip
    assert result.returncode == 0 and "wandb was imported" not in result.stderr, result.stderr


def test_a_population_groups_its_seeds_by_the_experiments_name_where_no_group_is_set(offline, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_GROUP")  # not started by a sweep
    out = population.train_population(ddpg.Args(**COUNTER_RUN, exp_name="pair"), seeds=(1, 2))
    assert out["status"] == 0
    sent = read_offline_runs(offline)
    assert [found.run.run_group for found in sent] == ["pair", "pair"]
    assert sorted(found.config["seed"] for found in sent) == [1, 2]


def test_a_population_tracks_one_wandb_run_per_seed(offline):
    out = population.train_population(ddpg.Args(**RUN), seeds=(1, 2))
    assert out["status"] == 0
    sent = read_offline_runs(offline)
    assert sorted(found.run.display_name for found in sent) == sorted(map(os.path.basename, out["run_dirs"]))
    for found in sent:
        run_dir = next(d for d in out["run_dirs"] if os.path.basename(d) == found.run.display_name)
        seed = int(found.run.display_name.split("__")[2])
        assert found.run.run_group == "sweep-1" and found.config["seed"] == seed and found.exit_code == 0
        _, logged = scalars(run_dir)  # each W&B run holds its own seed's scalars, all of them
        for tag, events in logged.items():
            assert steps_of(found.rows, tag) == [e.step for e in events], (seed, tag)
            assert [row[tag] for row in found.rows if tag in row] == pytest.approx([e.value for e in events])
