"""The engine under torchrun: 2 CPU processes (gloo) against 1 process at the same global batch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spp_gui.cli import main
from spp_gui.training.distributed import cluster_command, launch_command, per_rank_batch, shard_order
from spp_gui.training.engine import run
from spp_gui.training.metrics import read_epochs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_log_once_and_match_one_process(make_config, tmp_path):
    """Same global batch (8 = 2 x 4), same permutation and flips per epoch, no dropout or batch norm:
    the two runs take the same optimiser steps, so they differ only by the order of float sums
    (gradients averaged over ranks). That can move a borderline prediction, so the accuracies may
    differ by one of the 12 validation images (1/12 < 0.1); the losses must agree closely. Two epochs
    leave this tiny model near chance, so the per-step losses are the sharper check."""
    cfg = make_config(run__name="ddp")
    cfg.save(tmp_path / "run.toml")
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "spp_gui", "train", str(tmp_path / "run.toml")]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("ddp: finished") == 1  # the summary from rank 0 only
    assert proc.stderr.count("[ddp] epoch 2/2") == 1 and "cpu, 3 classes, 24 train / 12 val" in proc.stderr

    folder = tmp_path / "runs" / "ddp"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp"]  # one folder, not one per rank
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["kind"] == "epoch"] == [1, 2]
    assert sum(1 for x in lines if x["kind"] == "step") == 6  # 24 images / global batch 8 x 2 epochs
    for name in ("config.toml", "metrics.csv", "best.safetensors", "last.safetensors", "curves.png"):
        assert (folder / name).is_file(), name
    two = read_epochs(folder)

    result = run(make_config(run__name="one"))
    one = result.epochs
    # each step's loss (the mean over the global batch) depends on every earlier step's averaged gradients
    one_steps = [json.loads(x)["loss"] for x in (Path(result.run_dir) / "metrics.jsonl").read_text().splitlines()
                 if '"step"' in x]
    assert [x["loss"] for x in lines if x["kind"] == "step"] == pytest.approx(one_steps, rel=1e-4)
    for a, b in zip(one, two, strict=True):
        assert abs(a["val_acc"] - b["val_acc"]) <= 0.1
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)


def test_shards_together_are_the_one_process_order():
    one = shard_order(10, 3, 0, 0, 1, True)
    ranks = [shard_order(10, 3, 0, r, 3, True) for r in range(3)]
    assert all(len(r) == 4 for r in ranks)  # padded to 12 so every rank takes the same steps
    merged = torch.stack(ranks, 1).flatten()
    assert torch.equal(merged[:10], one) and torch.equal(merged[10:], one[:2])
    assert torch.cat([shard_order(7, 0, 0, r, 2, False) for r in range(2)]).sort().values.tolist() == list(range(7))


def test_global_batch_must_split_evenly():
    assert per_rank_batch(128, 4) == 32
    with pytest.raises(Exception, match="multiple of 3 such as 9 or 12"):
        per_rank_batch(10, 3)


def test_launch_and_cluster_lines(make_config, tmp_path, capsys, monkeypatch):
    make_config(run__batch_size=16).save(tmp_path / "run.toml")
    toml = str(tmp_path / "run.toml")
    assert main(["train", toml, "--nproc", "3"]) == 2  # checked before any process starts
    assert "run.batch_size = 16 is the global batch and does not split evenly across 3" in capsys.readouterr().err
    assert launch_command([toml], 2)[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                              "2", "-m"]
    assert main(["train", toml, "--nproc", "0"]) == 2
    assert "--nproc 0: give the number of processes" in capsys.readouterr().err
    assert main(["train", toml, "--print-torchrun", "--nproc", "8", "--nnodes", "2",
                 "--rdzv-endpoint", "node1:29400"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=node1:29400 -m spp_gui train {toml}")
    assert cluster_command(["a b.toml"], 1, 1, "h:1").endswith("train 'a b.toml'")

    started = []

    class FakePopen:
        def __init__(self, command):
            started.append(command)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def wait(self):
            return 3

    monkeypatch.setattr("spp_gui.cli.train.subprocess.Popen", FakePopen)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["train", toml, "--nproc", "2", "--compare"]) == 3  # torchrun's exit status passes through
    assert started == [launch_command([toml], 2, ["--compare"])]
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler again, not one for a finished job
    assert Path(started[0][0]) == Path(sys.executable)


@pytest.mark.parametrize("lost", [ConnectionResetError(104, "Connection reset by peer"), EOFError(),
                                  RuntimeError("DataLoader worker (pid(s) 7) exited unexpectedly")])
@pytest.mark.parametrize("pad", [False, True])
def test_a_batch_lost_with_its_worker_after_a_stop_ends_the_pass(tiny_data, monkeypatch, lost, pad):
    """SIGTERM to the process group kills the workers; a batch one of them had just sent is read from
    its socket, reset or closed by then. After a stop request that is the stop (the pass is cut; under
    torchrun the rest comes as empty batches, so the ranks still meet to agree on it), not a crash."""
    from spp_gui.training.data import BatchSource, scan_split

    source = BatchSource(scan_split(tiny_data / "train"), 32, 8, shuffle=False, workers=0, pin=False, seed=0,
                         cache="no")
    first = next(iter(source))

    def sent_then_lost():
        yield first
        raise lost

    monkeypatch.setattr(BatchSource, "__iter__", lambda self: sent_then_lost())
    got = list(source.batches(lambda: True, pad=pad))
    assert source.cut and got[0] is first and len(got) == (len(source) if pad else 1)
    assert all(len(b.labels) == 0 for b in got[1:])
    with pytest.raises(type(lost)):  # without a stop request it is the error it is
        list(source.batches(lambda: False, pad=pad))


@pytest.mark.parametrize("cache", ["yes", "no"])
def test_ranks_batches_together_are_the_one_process_batches(tiny_data, cache):
    """From the loader (DistributedSampler) or the memory cache, epoch after epoch."""
    from spp_gui.training.data import BatchSource, scan_split

    split = scan_split(tiny_data / "train")
    one = BatchSource(split, 32, 8, shuffle=True, workers=0, pin=False, seed=0, cache=cache)
    ranks = [BatchSource(split, 32, 4, shuffle=True, workers=0, pin=False, seed=0, cache=cache, rank=r, world=2)
             for r in range(2)]
    for epoch in (1, 2, 3):
        for source in (one, *ranks):
            source.set_epoch(epoch)
        whole = [b.indices.tolist() for b in one]
        shards = [[b.indices.tolist() for b in source] for source in ranks]
        assert len(shards[0]) == len(shards[1]) == len(ranks[0]) == len(whole) == 3
        assert [sorted(a + b) for a, b in zip(*shards, strict=True)] == [sorted(w) for w in whole]
