from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from spp_gui import build_model, suggest_mapping
from spp_gui.core.apply import save_weights
from spp_gui.core.sources import load_source
from spp_gui.core.trust import trust_file
from spp_gui.training.engine import (
    CheckpointSaved,
    Epoch,
    Failed,
    Finished,
    RunControl,
    Started,
    Step,
    Stopped,
    run,
    train,
)
from spp_gui.training.metrics import read_epochs

TINY_SPEC = "spp_gui:alexnet_spp?num_classes=3&width=0.0625&dropout=0.0"  # as make_config's default


def collect(cfg, control=None):
    events = []
    result = run(cfg, events.append, control)
    return events, result


def test_a_run_emits_events_and_fills_its_folder(make_config):
    events, result = collect(make_config())
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Started" and kinds[-1] == "Finished"
    started = events[0]
    assert isinstance(started, Started) and started.steps_per_epoch == 3 and started.loaded == "scratch"
    steps = [e for e in events if isinstance(e, Step)]
    assert [s.step for s in steps] == list(range(1, 7)) and all(len(s.losses) == 1 for s in steps)
    assert all(math.isfinite(s.losses[0]) and s.images_per_s > 0 for s in steps)
    epochs = [e for e in events if isinstance(e, Epoch)]
    assert [e.epoch for e in epochs] == [1, 2] and epochs[0].best
    assert {e.kind for e in events if isinstance(e, CheckpointSaved)} == {"best", "last"}
    folder = result.run_dir
    for name in ("config.toml", "metrics.csv", "metrics.jsonl", "best.safetensors", "last.safetensors", "curves.png"):
        assert (Path(folder) / name).is_file(), name
    rows = read_epochs(folder)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["val_acc"] == pytest.approx(epochs[1].val_acc)
    lines = [json.loads(x) for x in Path(f"{folder}/metrics.jsonl").read_text().splitlines()]
    assert sum(1 for x in lines if x["kind"] == "step") == 6
    with Image.open(f"{folder}/curves.png") as im:
        assert im.size == (1040, 360)
    with load_source(f"{folder}/last.safetensors") as last:
        assert "classifier.6.weight" in last.tensors


def test_same_seed_same_losses(make_config):
    a, _ = collect(make_config(run__name="a"))
    b, _ = collect(make_config(run__name="b"))
    assert [e.losses for e in a if isinstance(e, Step)] == [e.losses for e in b if isinstance(e, Step)]


def test_run_folders_never_overwrite(make_config):
    _, first = collect(make_config(run__epochs=1))
    _, second = collect(make_config(run__epochs=1))
    assert first.run_dir != second.run_dir and second.run_dir.endswith("tiny-2")


def test_cancel_takes_effect_within_one_step(make_config):
    control = RunControl()
    gen = train(make_config(run__epochs=5), control)
    seen = []
    for event in gen:
        seen.append(event)
        if isinstance(event, Step) and event.step == 2:
            control.stop()
    last = seen[-1]
    assert isinstance(last, Stopped) and last.step == 2
    assert max(e.step for e in seen if isinstance(e, Step)) == 2


def test_pause_then_resume_continues(make_config):
    control = RunControl()
    events = []
    for event in train(make_config(run__epochs=1), control):
        events.append(event)
        if isinstance(event, Step) and event.step == 1:
            control.pause()
            assert control.paused
            control.resume()
    assert isinstance(events[-1], Finished)


@pytest.fixture
def mapped(tmp_path):
    """A source checkpoint (same model, 5 classes) and a head mapping onto the 3-class target."""
    source = build_model(TINY_SPEC.replace("num_classes=3", "num_classes=5"), seed=123)
    path = tmp_path / "source.safetensors"
    save_weights(source, path)
    mapping = suggest_mapping(str(path), TINY_SPEC, strategy="head")
    mapping.save(tmp_path / "mapping.json")
    return source.state_dict(), tmp_path / "mapping.json"


def test_freeze_loaded_trains_only_the_new_head(make_config, mapped):
    source_state, mapping_path = mapped
    events, result = collect(make_config(model__mapping=str(mapping_path), optim__freeze_loaded=True))
    assert result.status == "finished"
    assert events[0].loaded.startswith("14 of 16 target tensors loaded")
    with load_source(f"{result.run_dir}/last.safetensors") as last:
        for key in ("features.0.weight", "classifier.4.bias"):
            assert torch.equal(last.read(key), source_state[key])
        fresh = build_model(TINY_SPEC, seed=0).state_dict()["classifier.6.weight"]
        assert not torch.equal(last.read("classifier.6.weight"), fresh)
    assert json.loads(Path(f"{result.run_dir}/load_report.json").read_text())["loaded_tensors"] == 14


def test_separate_lr_for_loaded_parameters(make_config, mapped):
    from spp_gui.training.engine import build_run_model, param_groups

    cfg = make_config(model__mapping=str(mapped[1]), optim__lr=1e-3, optim__loaded_lr=1e-5)
    model, report = build_run_model(cfg)
    groups = {g["name"]: g for g in param_groups(model, cfg, report)}
    assert groups["new"]["lr"] == 1e-3 and groups["loaded"]["lr"] == 1e-5
    assert len(groups["new"]["params"]) == 2 and len(groups["loaded"]["params"]) == 14


FAULTY_NET = textwrap.dedent('''
    import torch
    from torch import nn

    class Net(nn.Module):
        """Learns normally, then misbehaves after ``after`` training forwards."""

        def __init__(self, num_classes=3, after=4, fault="nan"):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))
            self.after, self.fault, self.calls = after, fault, 0

        def forward(self, x):
            if self.training:
                self.calls += 1
                if self.fault == "oom" and x.shape[0] > self.after:
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
                if self.fault == "nan" and self.calls > self.after:
                    return self.body(x) * float("nan")
            return self.body(x)
''')


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(make_config, tmp_path):
    (tmp_path / "net.py").write_text(FAULTY_NET)
    trust_file(tmp_path / "net.py")
    events, result = collect(make_config(model__spec=f"{tmp_path}/net.py:Net?after=4", run__epochs=3))
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.kind == "nan" and result.status == "failed"
    assert "loss became nan at epoch 2, step 5" in failed.message and "epoch 1" in failed.message
    assert [e.epoch for e in events if isinstance(e, Epoch)] == [1]
    with load_source(f"{result.run_dir}/last.safetensors") as last:
        assert all(torch.isfinite(last.read(k)).all() for k in last.tensors)


def test_out_of_memory_names_the_batch_size_and_offers_half(make_config, tmp_path):
    (tmp_path / "net.py").write_text(FAULTY_NET)
    trust_file(tmp_path / "net.py")
    events, result = collect(make_config(model__spec=f"{tmp_path}/net.py:Net?after=4&fault=oom"))
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.kind == "oom"
    assert "batch size 8" in failed.message and failed.retry_batch_size == 4 == result.retry_batch_size


def test_wrong_class_count_is_caught_before_training(make_config):
    from spp_gui.training.data import DatasetError

    with pytest.raises(DatasetError, match="num_classes=3"):
        collect(make_config(model__spec=TINY_SPEC.replace("num_classes=3", "num_classes=7")))


def test_loader_workers_use_a_safe_start_method(make_config):
    from spp_gui.training.data import BatchSource, scan_split, worker_context

    assert worker_context().get_start_method() in ("forkserver", "spawn")
    cfg = make_config(data__workers=1, data__cache="no", run__epochs=1, optim__optimizer="sgd", optim__scheduler="cosine")
    source = BatchSource(scan_split(cfg.data.train), 32, 8, shuffle=True, workers=1, pin=False, seed=0)
    assert source.loader.multiprocessing_context.get_start_method() in ("forkserver", "spawn")
    assert source.loader.persistent_workers
    _, result = collect(cfg)
    assert result.status == "finished" and len(result.epochs) == 1


def test_cli_retry_half_recovers_from_out_of_memory(make_config, tmp_path, capsys):
    from spp_gui.cli import main

    (tmp_path / "net.py").write_text(FAULTY_NET)
    make_config(model__spec=f"{tmp_path}/net.py:Net?after=4&fault=oom", run__epochs=1).save(tmp_path / "run.toml")
    assert main(["train", str(tmp_path / "run.toml"), "--trust-code"]) == 1
    assert "rerun with --retry-half to retry at batch size 4" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "run.toml"), "--retry-half", "--trust-code"]) == 0
    captured = capsys.readouterr()
    assert "retrying" in captured.err and "at batch size 4" in captured.err and "tiny: finished" in captured.out


def test_full_size_alexnet_spp_trains(make_config):
    """The seed's model at full width (61M parameters): one step and a validation pass."""
    cfg = make_config(model__spec="spp_gui:alexnet_spp?num_classes=3", data__image_size=96, run__epochs=1,
                      run__batch_size=24)
    events, result = collect(cfg)
    assert result.status == "finished" and events[0].steps_per_epoch == 1
    assert math.isfinite(result.epochs[0]["train_loss"]) and 0.0 <= result.final_val_acc <= 1.0


def test_run_folder_keeps_the_mapping_it_used(make_config, mapped):
    from spp_gui.core.mapping import Mapping
    from spp_gui.training.config import RunConfig

    _, result = collect(make_config(model__mapping=str(mapped[1]), run__epochs=1))
    kept = Path(result.run_dir) / "mapping.json"
    assert Mapping.load(kept) == Mapping.load(mapped[1])
    frozen = RunConfig.load(Path(result.run_dir) / "config.toml")
    assert frozen.model.mapping == str(kept.resolve()) and frozen.model.source.endswith("source.safetensors")
    assert Path(frozen.data.train).is_absolute()


def test_a_stopped_run_reports_the_epochs_it_evaluated(make_config):
    control = RunControl()
    events = []
    gen = train(make_config(run__epochs=5), control)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        events.append(event)
        if isinstance(event, Step) and event.epoch == 2:
            control.stop()
    assert result.status == "cancelled" and isinstance(events[-1], Stopped)
    epoch_1 = next(e for e in events if isinstance(e, Epoch))
    assert (result.best_epoch, result.best_val_acc, result.final_val_acc) == (1, epoch_1.val_acc, epoch_1.val_acc)


def test_cli_summary_of_a_run_without_an_evaluated_epoch():
    from spp_gui.cli.train import summary_line
    from spp_gui.training.engine import RunResult

    line = summary_line("tiny", RunResult("cancelled", "runs/tiny"))
    assert line == "tiny: cancelled, no epoch was evaluated, runs/tiny"
    done = RunResult("finished", "runs/tiny", 0.5, 1, 0.25, [{"epoch": 1}])
    assert summary_line("tiny", done) == "tiny: finished, best val acc 0.500 (epoch 1), final val acc 0.250, runs/tiny"
