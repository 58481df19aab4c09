"""The seed's experiment offline, quick size: the mapped-pretrained run must beat scratch."""

from __future__ import annotations

import re

from spp_gui.cli import main


def test_quick_demo_pretrained_wins(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    found = dict(re.findall(r"^(scratch|pretrained)\s+final val acc [0-9.]+\s+best val acc ([0-9.]+)", out, re.M))
    assert set(found) == {"scratch", "pretrained"}, out
    assert float(found["pretrained"]) >= float(found["scratch"]) + 0.15, out
    assert (tmp_path / "demo" / "compare.png").is_file() and (tmp_path / "demo" / "mapping.json").is_file()
    assert (tmp_path / "demo" / "pretrained.toml").is_file()
