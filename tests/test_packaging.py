"""The wheel a user installs: real package data (no symlinks, no developer scripts), a LICENSE, a CLI that runs.

Built from this checkout without network (no build isolation) and installed into a fresh venv that
borrows the already-installed dependencies, so the test runs offline in well under two minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(out), str(ROOT)], check=True, cwd=build, timeout=300,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    [found] = out.glob("spp_gui-*.whl")
    return found


def test_the_wheel_holds_the_data_and_no_developer_scripts(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "spp_gui/data/mappings/alexnet_to_alexnet_spp.json" in names
    assert "spp_gui/data/spp-gui.desktop" in names
    assert {f"spp_gui/icons/spp-gui-{n}.png" for n in (16, 32, 48, 64, 128, 256)} <= set(names)
    assert not [n for n in names if n.endswith(("take_screenshots.py", "make_icons.py", "constraints.txt"))]
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    for info in zipfile.ZipFile(wheel).infolist():  # no symlinks: the high bits of external_attr hold the mode
        assert (info.external_attr >> 16) & 0o170000 != 0o120000, info.filename


def test_installed_wheel_runs_the_cli_and_the_sample_mapping(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # dependencies come from the environment the tests run in; spp_gui itself only from the wheel
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(site)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"QT_QPA_PLATFORM": "offscreen"}
    where = subprocess.run([python, "-c", "import spp_gui; print(spp_gui.__file__); "
                            "print(spp_gui.data_path('mappings/alexnet_to_alexnet_spp.json'))"],
                           capture_output=True, text=True, cwd=cwd, env=env, check=True).stdout.split()
    assert where[0].startswith(site), "spp_gui must come from the wheel, not the checkout"
    run = subprocess.run([python, "-m", "spp_gui", "inspect", "spp_gui:alexnet_spp?num_classes=20"],
                         capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert run.returncode == 0 and "total: 16 tensors" in run.stdout, run.stderr
    run = subprocess.run([python, "-m", "spp_gui", "apply", where[1], "--source", "torchvision:alexnet",
                          "-o", str(cwd / "mapped.safetensors")],
                         capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert run.returncode == 0 and (cwd / "mapped.safetensors").is_file(), run.stderr
    icon = subprocess.run([python, "-c", "from PySide6.QtWidgets import QApplication; a = QApplication([]); "
                           "from spp_gui.gui.style import app_icon; print(len(app_icon().availableSizes()))"],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert icon.returncode == 0 and int(icon.stdout.split()[-1]) == 6, icon.stderr
