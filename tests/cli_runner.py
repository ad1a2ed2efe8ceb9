"""Run the real CLI entry point in-process, as a person would from a shell."""

from __future__ import annotations

import sys

from compliance.cli import main


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Call ``compliance ARGS...``; returns ``(exit code, stdout, stderr)``."""
    monkeypatch.setattr(sys, "argv", ["compliance", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err
