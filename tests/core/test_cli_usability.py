"""The CLI as a new user meets it: typos, quiet and JSON output, long tables, progress, rules that do nothing."""

from __future__ import annotations

import io
import json

import pytest
import torch

from spp_gui.cli import common, dispatch, main
from spp_gui.cli.common import ProgressLine
from spp_gui.cli.dispatch import mistyped_command

RESNET = "torchvision:resnet18"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def editor(monkeypatch):
    """Record what would open the editor instead of opening it."""
    opened = []
    monkeypatch.setattr(dispatch, "_gui", lambda argv: opened.append(list(argv)) or 0)
    return opened


# -- an unknown subcommand ---------------------------------------------------------------------


@pytest.mark.parametrize("typo,meant", [("inpsect", "inspect"), ("mpa", "map"), ("aply", "apply"),
                                        ("verfy", "verify"), ("exprot", "export"), ("tarin", "train")])
def test_a_mistyped_subcommand_names_the_nearest_and_opens_nothing(capsys, editor, typo, meant):
    code, out, err = run(capsys, typo, "m.json")
    assert code == 2 and editor == [] and out == ""
    assert err.startswith(f"spp-gui: error: unknown command '{typo}'; did you mean '{meant}'?")
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv", [
    ["a.pth", "torchvision:resnet18"],        # SOURCE TARGET
    ["torchvision:alexnet", "net.py:Net"],
    ["--mapping", "m.json"],
    ["runs/inspct"],                          # a path, however close to a name
    ["zebra"],                                # nothing like a subcommand: the editor says what it cannot open
    [],
])
def test_files_specs_and_options_still_open_the_editor(capsys, editor, argv):
    assert main(argv) == 0 and editor == [argv]


def test_an_existing_file_named_like_a_subcommand_is_a_file(tmp_path, monkeypatch, editor):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inspct").write_bytes(b"")
    assert mistyped_command("inspct", ["inspect", "map"]) is None
    assert main(["inspct"]) == 0 and editor == [["inspct"]]


def test_a_typo_with_control_characters_is_shown_escaped(capsys, editor):
    code, _, err = run(capsys, "inspec\x1b[2J")
    assert code == 2 and "\x1b" not in err and r"inspec\x1b[2J" in err


# -- map --json, --all, -q -------------------------------------------------------------------------


def test_map_json_holds_the_mapping_and_every_status_row(capsys, tmp_path):
    out_path = tmp_path / "m.json"
    code, out, _ = run(capsys, "map", "torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "--strategy", "order",
                       "-o", out_path, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["summary"].startswith("13 of 16 target tensors mapped")
    assert data["counts"] == {"exact": 13, "renamed": 0, "adapted": 0, "invalid": 0, "unmapped": 3}
    assert len(data["rows"]) == 16 and abs(data["share"] - 0.2683) < 5e-4
    row = data["rows"][0]
    assert row["target"] == "features.0.weight" and row["status"] == "exact" and row["source"] == "features.0.weight"
    assert row["shape"] == [64, 3, 11, 11]
    assert {r["target"] for r in data["rows"] if r["status"] == "unmapped"} == {
        "classifier.1.weight", "classifier.6.weight", "classifier.6.bias"}
    assert len(data["mapping"]["entries"]) == 13 and out_path.exists()


def test_map_of_a_large_model_prints_counts_and_what_needs_a_look(capsys, tmp_path):
    argv = ["map", RESNET, f"{RESNET}?num_classes=10", "-o", tmp_path / "m.json"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "122 target tensors: 120 exact, 2 unmapped; showing the 2 invalid or unmapped (--all for every row" in out
    assert "fc.weight" in out and "fc.bias" in out
    assert "layer1.0.conv1.weight" not in out  # exact rows are counted, not listed
    assert "120 of 122 target tensors mapped" in out
    code, out, _ = run(capsys, *argv, "--all")
    assert code == 0 and "layer1.0.conv1.weight" in out and out.count("\nexact") == 119


def test_small_mappings_still_print_every_row(capsys, tmp_path):
    code, out, _ = run(capsys, "map", "torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "--strategy", "order",
                       "-o", tmp_path / "m.json")
    assert code == 0 and out.count("exact ") == 13 and "target tensors:" not in out


def test_quiet_prints_only_the_final_line(capsys, tmp_path):
    mapping = tmp_path / "m.json"
    spp = "spp_gui:alexnet_spp?num_classes=20"
    code, out, err = run(capsys, "map", "torchvision:alexnet", spp, "--strategy", "order", "-o", mapping, "-q")
    assert code == 0 and err == ""
    assert out.count("\n") == 1 and out.startswith("13 of 16 target tensors mapped")
    code, out, err = run(capsys, "apply", mapping, "-o", tmp_path / "w.safetensors", "--quiet")
    assert code == 0 and out.count("\n") == 1 and out.startswith("13 of 16 target tensors loaded")
    code, out, _ = run(capsys, "inspect", spp, "-q")
    assert code == 0 and out == "total: 16 tensors, 71,765,844 parameters\n"
    code, out, _ = run(capsys, "verify", mapping, "--input-shape", "1,3,96,96", "-q")
    assert code == 0 and out.count("\n") == 1 and out.startswith("5 layers agree, 0 disagree")


def test_quiet_export_keeps_the_snippet_and_the_final_line(capsys, tmp_path):
    mapping = tmp_path / "m.json"
    run(capsys, "map", "torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "--strategy", "auto", "--adapt",
        "-o", mapping)
    code, out, err = run(capsys, "export", mapping, "--as", "hf-key-mapping")
    assert code == 0 and "not expressed:" in err
    code, quiet_out, quiet_err = run(capsys, "export", mapping, "--as", "hf-key-mapping", "-q")
    assert code == 0 and quiet_out == out
    assert "not expressed:" not in quiet_err and quiet_err.count("\n") == 1
    assert "could not be expressed as hf-key-mapping" in quiet_err


# -- progress ---------------------------------------------------------------------------------------


def test_progress_line_waits_then_redraws_in_place_and_wipes_itself(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    now = [0.0]
    term = Terminal()
    line = ProgressLine("sha256 of big.pth", stream=term, delay=0.5, clock=lambda: now[0])
    line(10**8, 10**9)
    assert term.getvalue() == ""  # under half a second: nothing shown
    now[0] = 1.0
    line(5 * 10**8, 10**9, "layer1.weight")
    shown = term.getvalue()
    assert shown.startswith("\r\033[Ksha256 of big.pth  500.0 MB of 1.0 GB")
    assert "50%" in shown and "ETA 0:01" in shown and "layer1.weight" in shown
    now[0] = 1.01
    line(6 * 10**8, 10**9)
    assert term.getvalue() == shown  # redrawn at most 10 times a second
    line(10**9, 10**9)
    assert "1.0 GB of 1.0 GB" in term.getvalue()  # the last step always shows
    line.close()
    assert term.getvalue().endswith("\r\033[K")


def test_progress_line_fits_the_terminal(monkeypatch):
    """A line that wraps cannot be redrawn in place."""
    monkeypatch.setenv("COLUMNS", "50")
    term = Terminal()
    line = ProgressLine("apply", stream=term, delay=0)
    line(1, 2, "a" * 100)
    assert len(term.getvalue().removeprefix("\r\033[K")) == 49


def test_progress_line_is_silent_off_a_terminal_and_when_quiet():
    for stream, enabled in ((io.StringIO(), True), (Terminal(), False)):
        line = ProgressLine("x", stream=stream, delay=0, enabled=enabled)
        line(1, 2)
        line.close()
        assert stream.getvalue() == ""


def test_map_says_it_hashes_the_source_unless_the_digest_cache_has_it(tmp_path, monkeypatch, small_pth):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(common, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    argv = ["map", str(small_pth), "torchvision:squeezenet1_0", "-o", str(tmp_path / "m.json")]
    monkeypatch.setattr("sys.stderr", term := Terminal())
    assert main(argv) == 0
    assert "sha256 of small.pth  5.0 MB of 5.0 MB  100%" in term.getvalue() and "ETA" in term.getvalue()
    assert term.getvalue().endswith("\r\033[K")
    monkeypatch.setattr("sys.stderr", term := Terminal())
    assert main(argv) == 0
    assert term.getvalue() == ""  # the digest cache knew the file
    monkeypatch.setattr("sys.stderr", term := Terminal())
    small_pth.write_bytes(small_pth.read_bytes())  # rewritten: hashed again
    assert main(argv) == 0 and "sha256 of" in term.getvalue()
    monkeypatch.setattr("sys.stderr", term := Terminal())
    small_pth.write_bytes(small_pth.read_bytes())
    assert main([*argv, "-q"]) == 0 and term.getvalue() == ""


def test_apply_shows_bytes_and_eta_on_a_terminal(tmp_path, monkeypatch, small_pth):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    mapping = tmp_path / "m.json"
    assert main(["map", str(small_pth), "torchvision:squeezenet1_0?num_classes=3", "-o", str(mapping)]) == 0
    monkeypatch.setattr(common, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr("sys.stderr", term := Terminal())
    assert main(["apply", str(mapping), "-o", str(tmp_path / "w.safetensors")]) == 0
    shown = term.getvalue()
    assert shown.startswith("\r\033[Kapply  ") and " of " in shown and "MB" in shown and "ETA" in shown
    assert "[1/" not in shown and shown.endswith("\r\033[K")


# -- rename rules that do nothing, mappings with no pairs --------------------------------------------


def test_rename_rules_that_match_nothing_are_named(capsys, tmp_path, small_pth):
    code, out, err = run(capsys, "map", small_pth, "torchvision:squeezenet1_0", "--rename", r"^module\.=",
                         "--rename", "^=backbone.", "-o", tmp_path / "m.json")
    assert code == 0
    assert err.count("warning: ") == 1
    assert r"warning: rename rule '^module\.=' matched no source key" in err
    assert ("0 of 52 target tensors mapped: nothing fits; the rules turn source key 'features.0.weight' into "
            "'backbone.features.0.weight', which the target lacks") in out
    assert (tmp_path / "m.json").exists()


def test_a_rule_counts_after_the_rules_before_it(capsys, tmp_path):
    """Rules run in order on each key, as the rename strategy runs them: the second sees the first's output."""
    state = torch.nn.DataParallel(torch.nn.Linear(3, 2)).state_dict()
    torch.save(state, tmp_path / "dp.pth")
    code, out, err = run(capsys, "map", tmp_path / "dp.pth", "torchvision:alexnet", "--rename", r"^module\.=",
                         "--rename", r"^module\.=x", "--rename", r"^weight$=classifier.6.weight",
                         "-o", tmp_path / "m.json")
    assert code == 0
    assert r"rule '^module\.=x' matched no source key" in err and err.count("warning: ") == 1


def test_rename_with_another_strategy_says_the_rules_are_ignored(capsys, tmp_path, small_pth):
    code, _, err = run(capsys, "map", small_pth, "torchvision:squeezenet1_0", "--strategy", "exact",
                       "--rename", "^=x.", "-o", tmp_path / "m.json")
    assert code == 0 and "--strategy exact ignores them" in err


def test_a_mapping_with_no_pairs_says_so_and_what_to_try(capsys, tmp_path):
    torch.save({"stem.kernel": torch.zeros(2, 2)}, tmp_path / "odd.pth")
    code, out, _ = run(capsys, "map", tmp_path / "odd.pth", "torchvision:alexnet", "-o", tmp_path / "m.json")
    assert code == 0
    assert "0 of 16 target tensors mapped: nothing fits; try --strategy auto" in out
    code, out, _ = run(capsys, "map", tmp_path / "odd.pth", "torchvision:alexnet", "-o", tmp_path / "m.json", "-q")
    assert code == 0 and out.startswith("0 of 16 target tensors mapped: nothing fits") and out.count("\n") == 1
