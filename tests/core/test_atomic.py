from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from spp_gui.core.apply import save_weights
from spp_gui.core.atomic import atomic_write
from spp_gui.core.sources import load_source


def test_exception_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights({"a": torch.ones(3)}, path)

    with pytest.raises(RuntimeError):
        with atomic_write(path) as fh:
            fh.write(b"partial garbage")
            raise RuntimeError("disk on fire")
    assert torch.equal(load_source(path).read("a"), torch.ones(3))
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
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    # wait (polling, bounded) until the temporary file exists, i.e. the save is mid-write; then kill -9
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
            break
        time.sleep(0.001)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    src = load_source(path)
    assert list(src.tensors) in (["old"], [f"t{i}" for i in range(200)])
    for key in src.tensors:
        src.read(key)
