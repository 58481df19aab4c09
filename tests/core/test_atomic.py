from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from spp_gui.core.apply import save_weights
from spp_gui.core.atomic import atomic_write, atomic_write_text
from spp_gui.core.sources import load_source


def test_exception_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights({"a": torch.ones(3)}, path)

    with pytest.raises(RuntimeError):
        with atomic_write(path) as fh:
            fh.write(b"partial garbage")
            raise RuntimeError("disk on fire")
    with load_source(path) as src:
        assert torch.equal(src.read("a"), torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left behind


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_kill_during_save_leaves_previous_file_loadable(tmp_path, suffix):
    path = tmp_path / f"weights{suffix}"
    save_weights({"old": torch.arange(4.0)}, path)
    script = textwrap.dedent(f"""
        import sys, torch
        from spp_gui.core.apply import save_weights
        state = {{f"t{{i}}": torch.randn(256, 1024) for i in range(200)}}  # ~200 MB: slow enough to kill
        print("ready", flush=True)
        save_weights(state, {str(path)!r})
    """)
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().strip() == "ready"
        # wait (polling, bounded) until the temporary file exists, i.e. the save is mid-write; then kill -9
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
                break
            time.sleep(0.001)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    with load_source(path) as src:
        assert list(src.tensors) in (["old"], [f"t{i}" for i in range(200)])
        for key in src.tensors:
            src.read(key)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002, 0o077])
def test_a_new_file_respects_the_umask_like_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "m.json", "{}")
        with open(tmp_path / "plain.json", "w") as fh:
            fh.write("{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "m.json") == 0o666 & ~umask == _mode(tmp_path / "plain.json")


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "private.json"
    path.write_text("old")
    os.chmod(path, 0o600)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o600
    os.chmod(path, 0o664)
    atomic_write_text(path, "newer")
    assert _mode(path) == 0o664


def test_a_symlink_is_written_through_not_replaced(tmp_path):
    real = tmp_path / "store" / "mapping.json"
    real.parent.mkdir()
    real.write_text("old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(os.path.relpath(real, tmp_path))
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new" and _mode(real) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "store"]
    assert [p.name for p in real.parent.iterdir()] == ["mapping.json"]  # no temp left beside the target


def _temps(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp"))


def _writer_that_hangs(path) -> subprocess.Popen:
    script = textwrap.dedent(f"""
        import time
        from spp_gui.core.atomic import atomic_write
        with atomic_write({str(path)!r}, "w") as fh:
            fh.write("half a mapping")
            fh.flush()
            print("writing", flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def test_temp_files_of_writers_killed_with_sigkill_are_removed_on_the_next_write(tmp_path):
    path = tmp_path / "m.json"
    with _writer_that_hangs(path) as dead:  # leaving the block waits for it and closes its pipe
        os.kill(dead.pid, signal.SIGKILL)
    left = _temps(tmp_path, "m.json")
    assert len(left) == 1  # kill -9 leaves it: nothing ran to remove it
    alive = _writer_that_hangs(path)  # a writer still at work: its temp file must survive
    try:
        theirs = set(_temps(tmp_path, "m.json")) - set(left)
        atomic_write_text(path, "{}")
        assert path.read_text() == "{}"
        assert _temps(tmp_path, "m.json") == sorted(theirs)
    finally:
        alive.kill()
        alive.wait()
        alive.stdout.close()


def test_stale_temp_files_without_a_pid_go_after_a_minute(tmp_path):
    path = tmp_path / "m.json"
    old, fresh, other = tmp_path / ".m.json.abcd1234.tmp", tmp_path / ".m.json.zyxw9876.tmp", tmp_path / ".n.json.abcd1234.tmp"
    for p in (old, fresh, other):
        p.write_text("partial")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    os.utime(other, (an_hour_ago, an_hour_ago))
    atomic_write_text(path, "{}")
    assert not old.exists()
    assert fresh.exists()  # maybe a writer at work right now
    assert other.exists()  # another file's: not this write's business


def test_a_device_or_fifo_is_never_replaced_by_a_file(tmp_path):
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="FIFO"):
        atomic_write_text(fifo, "x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(OSError, match="device"):
        atomic_write_text("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
