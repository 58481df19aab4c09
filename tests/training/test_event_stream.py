"""Events as JSON lines (``spp-gui train --events-jsonl``) and reading a torchrun console back."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys

from spp_gui.training.engine import Epoch, Failed, Finished, Started, Step, Stopped
from spp_gui.training.event_stream import ConsoleReader, event_from_json, event_to_json
from spp_gui.training.events import Message, describe

# torchrun's summary after rank 1 was killed, as it prints it (`--tee 3` prefixes the ranks' lines)
TORCHRUN_FAILURE = """\
[default0]:{"event":"Started","run":"r","run_dir":"/runs/r","device":"cpu","classes":["a","b"],"n_train":8,"n_val":4,"steps_per_epoch":1,"epochs":1,"loaded":"scratch"}
[default1]:loading shard 1
[default1]:Traceback (most recent call last):
[default1]:RuntimeError: boom
W1129 04:56:44.384000 1916 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 1922 closing signal SIGTERM
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 1922)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-29_04:56:44
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : 1 (pid: 1923)
============================================================
"""


def test_every_event_round_trips():
    events = [Started("r", "/d", "cpu", ["a", "b"], 8, 4, 2, 3, "scratch"),
              Step("r", 1, 2, 6, [0.5, float("nan")], 1e-3, 120.0, 0.5),
              Epoch("r", 1, 3, 0.7, 0.5, 0.8, 0.25, 1e-3, 1.5, 16.0, 0, True),
              Finished("r", "/d", 0.5, 1, 0.25), Stopped("r", "/d", 1, 2),
              Failed("r", "/d", "out of memory", "oom", 4), Message("", "demo: scratch 0.5")]
    for event in events:
        line = event_to_json(event)
        assert "\n" not in line
        back = event_from_json(line)
        assert type(back) is type(event)
        if isinstance(event, Step):
            assert back.losses[0] == 0.5 and math.isnan(back.losses[1])
        else:
            assert back == event


def test_other_lines_are_not_events():
    for line in ("", "epoch 1/2: loss 0.3", '{"event":"Nope"}', '{"event":"Step","run":', '{"event":"Finished"}',
                 '{"other": 1}'):
        assert event_from_json(line) is None


def test_console_reader_names_the_root_cause_and_its_lines():
    reader = ConsoleReader()
    events = [e for line in TORCHRUN_FAILURE.splitlines() if (e := reader.feed(line)) is not None]
    assert [type(e).__name__ for e in events] == ["Started"]
    assert reader.ending is None
    assert [(f.rank, f.exit_code, f.root_cause) for f in reader.failed_ranks] == [(1, 1, True), (0, -15, False)]
    text = reader.failure(1)
    assert text.startswith("rank 1 exited with code 1; rank 0 was killed by SIGTERM. torchrun saw rank 1 end first.\n"
                           "rank 1, its last 3 lines of output:\nloading shard 1\nTraceback (most recent call last):\n"
                           "RuntimeError: boom\nrank 0 printed nothing before it ended.")


def test_console_reader_of_one_process_reads_bare_lines():
    """A run in its own process (no torchrun): every line is its own, events among log lines."""
    reader = ConsoleReader(prefixed=False)
    assert reader.feed("loading weights") is None
    event = reader.feed(event_to_json(Step("r", 1, 2, 6, [0.5], 1e-3, 120.0, 0.5)))
    assert isinstance(event, Step) and reader.ending is None
    assert reader.feed("[default0]:not a rank here, just text") is None
    assert "loading weights" in reader.failure(-signal.SIGKILL)
    assert "killed by SIGKILL" in reader.failure(-signal.SIGKILL)
    assert "out-of-memory killer" in reader.failure(-signal.SIGKILL)
    reader.feed("spp-gui: error: model spec 'x': unknown option no_such_option")
    assert reader.failure(2) == ("model spec 'x': unknown option no_such_option\n"
                                 "(the training process exited with code 2)")
    reader.feed(event_to_json(Stopped("r", "/d", 1, 2)))
    assert isinstance(reader.ending, Stopped)


def test_console_reader_without_any_rank_output():
    reader = ConsoleReader()
    reader.feed("usage: torchrun [-h] ...")
    reader.feed("torchrun: error: unrecognized arguments: --bogus")
    assert reader.failure(2).startswith("torchrun exited with code 2 before any rank reported an error.")
    assert "unrecognized arguments" in reader.failure(2)
    assert reader.failure(-9).startswith("torchrun was killed by SIGKILL")


def test_cli_events_jsonl_and_sigterm(make_config, tmp_path):
    """stdout carries only events; SIGTERM to the whole process group (as torchrun and schedulers
    send it) ends the run after its step with a Stopped event."""
    cfg = make_config(run__epochs=500, run__name="long")
    cfg.save(tmp_path / "run.toml")
    proc = subprocess.Popen([sys.executable, "-m", "spp_gui", "train", str(tmp_path / "run.toml"), "--events-jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    events = []
    for line in proc.stdout:
        events.append(event_from_json(line))
        assert events[-1] is not None, line
        if len(events) == 4:
            os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err  # not finished
    assert isinstance(events[0], Started) and isinstance(events[-1], Stopped)
    assert "[long] cancelled: stopped at epoch" in err and "long: cancelled" in err
    assert (tmp_path / "runs" / "long" / "metrics.jsonl").is_file()


def test_sigterm_to_a_local_launch_stops_every_rank(make_config, tmp_path):
    """``spp-gui train --nproc 2`` passes SIGTERM on: the ranks stop after their step, none is left.

    The signal is sent again with every line after the third step, as an impatient script would:
    the launcher passes on only the first (a repeat aborted torchrun's wait for its ranks, and
    rank 0 died before its Stopped)."""
    cfg = make_config(run__epochs=500, run__name="long")
    cfg.save(tmp_path / "run.toml")
    proc = subprocess.Popen([sys.executable, "-m", "spp_gui", "train", str(tmp_path / "run.toml"), "--nproc", "2",
                             "--events-jsonl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen, sent = [], 0
    for line in proc.stdout:  # torchrun without --tee: rank 0's lines arrive as they are
        event = event_from_json(line)
        seen.append(event)
        if sum(isinstance(e, Step) for e in seen) >= 3 and not isinstance(event, Stopped):
            proc.send_signal(signal.SIGTERM)  # the launcher only, as a terminal or a script would
            sent += 1
    _, err = proc.communicate(timeout=90)
    assert sent > 1  # step 3 ends epoch 1: its Epoch and CheckpointSaved lines follow before the stop
    assert isinstance(seen[-1], Stopped), err
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "run.toml")], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


def test_stopped_keeps_its_old_wire_name():
    """Scripts reading ``--events-jsonl`` saw "Cancelled" before the event was renamed apart from the exception."""
    line = event_to_json(Stopped("r", "/d", 1, 2))
    assert line.startswith('{"event":"Cancelled",') and event_from_json(line) == Stopped("r", "/d", 1, 2)


def test_describe_is_one_line_per_event_the_cli_and_gui_show():
    assert describe(Stopped("r", "/d", 1, 2)) == "[r] cancelled: stopped at epoch 1, step 2"
    assert describe(Finished("r", "/d", 0.5, 1, 0.25)) == "[r] done, best val acc 0.500 (epoch 1), final 0.250; /d"
    assert describe(Failed("r", "/d", "out of memory", "oom", 4)) == "[r] failed: out of memory"
    assert describe(Message("demo", "drawing")) == "[demo] drawing"
    assert describe(Epoch("r", 1, 3, 0.7, 0.5, 0.8, 0.25, 1e-3, 1.5, 16.0, 2, True)) == (
        "[r] epoch 1/3: train loss 0.7000 acc 0.500 | val loss 0.8000 acc 0.250 (best) | 1.5s "
        "| 2 unreadable images skipped")
    assert describe(Step("r", 1, 2, 6, [0.5], 1e-3, 120.0, 0.5)) is None
