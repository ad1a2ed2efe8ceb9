"""The CLI's contract with people: help that explains, one-line errors, non-zero exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from cli_runner import run_cli

ROOT = Path(__file__).resolve().parents[1]




def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


def test_help_lists_commands(monkeypatch, capsys):
    code, out, _ = run_cli(["--help"], monkeypatch, capsys)
    assert code == 0
    for command in ("report", "adapt", "lineage", "policies"):
        assert command in out


def test_report_help_explains_itself(monkeypatch, capsys):
    code, out, _ = run_cli(["report", "--help"], monkeypatch, capsys)
    assert code == 0
    assert "--policy" in out and "--base" in out and "base_model" in out


def test_missing_folder(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(["report", str(tmp_path / "nope"), "-q"], monkeypatch, capsys)
    assert code != 0
    line = _one_error_line(err)
    assert "nope" in line and "folder" in line


def test_folder_without_lineage(monkeypatch, capsys, tiny_model_dir):
    code, _, err = run_cli(["report", str(tiny_model_dir), "-q", "--no-pdf"], monkeypatch, capsys)
    assert code != 0
    assert "--base" in _one_error_line(err)


def test_unknown_policy_name(monkeypatch, capsys, refusing_model_dir):
    code, _, err = run_cli(["report", str(refusing_model_dir), "--policy", "dental", "-q"], monkeypatch, capsys)
    assert code != 0
    line = _one_error_line(err)
    assert "unknown policy 'dental'" in line and "healthcare" in line


def test_invalid_policy_file(monkeypatch, capsys, refusing_model_dir, tmp_path):
    doc = yaml.safe_load((ROOT / "policies" / "healthcare.yaml").read_text())
    doc["rules"][0]["max"] = "ten percent"
    bad = tmp_path / "bad-policy.yaml"
    bad.write_text(yaml.safe_dump(doc))
    code, _, err = run_cli(["report", str(refusing_model_dir), "--policy", str(bad), "-q"], monkeypatch, capsys)
    assert code != 0
    line = _one_error_line(err)
    assert "bad-policy.yaml is invalid" in line and "rules[0]" in line


def test_adapt_with_missing_data(monkeypatch, capsys, tiny_model_dir, tmp_path):
    code, _, err = run_cli(["adapt", str(tiny_model_dir), "--data", str(tmp_path / "none.jsonl"),
                            "--out", str(tmp_path / "o"), "-q"], monkeypatch, capsys)
    assert code != 0
    assert "none.jsonl" in _one_error_line(err)
    assert not (tmp_path / "o").exists()


def test_adapt_refuses_to_overwrite(monkeypatch, capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "hi", "response": "hello"}\n')
    code, _, err = run_cli(["adapt", str(tiny_model_dir), "--data", str(data), "--out", str(out), "-q"],
                           monkeypatch, capsys)
    assert code != 0
    assert "--overwrite" in _one_error_line(err)
    assert (out / "keep.txt").read_text() == "precious"


def test_bad_training_line_is_named(monkeypatch, capsys, tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "hi", "response": "hello"}\n{"prompt": "no answer"}\n')
    code, _, err = run_cli(["adapt", str(tiny_model_dir), "--data", str(data), "--out", str(tmp_path / "o"), "-q"],
                           monkeypatch, capsys)
    assert code != 0
    assert "line 2" in _one_error_line(err)


def test_real_entry_point_prints_one_line_without_traceback(tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "compliance.cli", "report", str(tmp_path / "absent"), "-q"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert _one_error_line(proc.stderr).startswith("error: model")


def _entry_point(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "compliance.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_mistyped_command_is_one_usage_line_with_the_suggestion():
    proc = _entry_point("reprot", "x")
    assert proc.returncode == 2
    assert _one_error_line(proc.stderr) == "error: No such command 'reprot'. Did you mean 'report'? (see 'compliance --help')"


def test_unknown_option_is_one_usage_line_naming_it():
    proc = _entry_point("report", "--nosuch")
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert line.startswith("error: No such option: --nosuch") and line.endswith("(see 'compliance report --help')")


def test_bad_option_value_is_one_usage_line():
    proc = _entry_point("report", "some-model", "--limit", "many")
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "'--limit'" in line and "compliance report --help" in line


def test_debug_still_shows_the_usage_error_traceback():
    proc = _entry_point("--debug", "reprot")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_fingerprints_print_literally(capsys):
    from compliance.cli.app import out

    out.print("key SHA-256 77:CD:AF:12")  # ":CD:" is also rich's emoji code for a compact disc
    assert "77:CD:AF:12" in capsys.readouterr().out


def test_empty_stop_string_is_refused(monkeypatch, capsys, refusing_model_dir):
    code, _, err = run_cli(["report", str(refusing_model_dir), "--stop", "", "-q", "--no-pdf"], monkeypatch, capsys)
    assert code != 0
    assert "--stop '' is empty" in _one_error_line(err)


def test_stop_strings_reach_the_answers_and_the_report(monkeypatch, capsys, refusing_model_dir, tmp_path):
    code, out, err = run_cli(["report", str(refusing_model_dir), "--stop", "help", "--limit", "6", "--no-pdf", "-q",
                              "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["generation"]["config"]["stop"] == ["help"]
    answers = [item["model"]["response"] for item in report["items"]]
    assert answers and all(a == "I cannot" for a in answers)


def test_judges_lists_both_axes_and_what_runs_in_every_report(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(["judges"], monkeypatch, capsys)
    assert code == 0
    rows = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert "harm" in rows["guard"] and "harm" in rows["harmbench-cls"] and "refusal" in rows["refusal-rules"]
    assert "every report" in rows["refusal-embed"] and "when chosen" in rows["guard"]
    assert "held out (n=450)" in rows["refusal-rules"]
    # Harm judges: the figure on questions they were not trained on, never one that includes their training file.
    for name in ("harm-ensemble", "harm-cls", "harm-embed"):
        assert "on unseen questions (n=1540)" in rows[name] and "n=7700" not in rows[name]
    assert "default; every report" in rows["harm-ensemble"] and "default; every report" in rows["refusal-hybrid"]
