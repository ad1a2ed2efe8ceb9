"""The CLI application object, shared consoles, and the entry point.

Every command parses its arguments, calls the API and prints. Errors meant for people
(:class:`~compliance.errors.ComplianceError`) print as one line and exit non-zero; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from compliance.errors import ComplianceError

app = typer.Typer(
    name="compliance",
    help="Re-evaluate a fine-tuned language model against the model it came from, and write a report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(emoji=False)  # fingerprints like ":CD:" must not become emoji
err = Console(stderr=True, emoji=False)
_STATE = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    _STATE["debug"] = debug


def main() -> None:
    """Entry point: run the app, turning errors meant for people into one line and an exit code."""
    debug = "--debug" in sys.argv[1:]
    try:
        app(standalone_mode=False)
    except ComplianceError as exc:
        if debug:
            raise
        # Escaped: messages quote user input and commands like pip install 'compliance[vllm]', not markup.
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except __import__("click").exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except __import__("click").exceptions.Abort:
        sys.exit(1)


