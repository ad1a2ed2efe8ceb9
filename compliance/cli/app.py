"""The CLI application object, shared consoles, and the entry point.

Every command parses its arguments, calls the API and prints. Errors meant for people
(:class:`~compliance.errors.ComplianceError`) print as one line and exit non-zero; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import sys
import unicodedata

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

#: Help of ``--tsa`` (``report`` and ``sign``).
TSA_HELP = ("RFC 3161 time-stamping authority URL (default $COMPLIANCE_TSA_URL): timestamps both signatures "
            "(PAdES B-T, B-LT where the chains allow) so the report verifies after the certificate expires.")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    _STATE["debug"] = debug


#: Unicode categories printed as escapes: controls (newline, ESC), format characters (bidi overrides), line breaks.
_HIDDEN = {"Cc", "Cf", "Zl", "Zp"}


def plain(value: object) -> str:
    """``value`` as text that prints as itself, on one line, through a rich console.

    Text from files and servers (a card's licence, a benchmark's categories, a report's model id) may
    hold rich markup (``[/]`` raises, ``[link=...]`` restyles), terminal escapes, or line breaks that
    would split a one-line error: markup is escaped, and control, format and line-break characters
    are shown as escapes (``\\n``, ``\\x1b``).
    """
    text = str(value)
    if any(unicodedata.category(c) in _HIDDEN for c in text):
        text = "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _HIDDEN else c
                       for c in text)
    return escape(text)


def _click_exceptions() -> tuple[type, type]:
    """(ClickException, UsageError) of the click that typer runs on.

    Typer 0.2x vendors click as ``typer._click``, whose exceptions are not ``click``'s.
    """
    try:
        from typer._click import exceptions
    except ImportError:  # older typer runs on click itself
        from click import exceptions
    return exceptions.ClickException, exceptions.UsageError


def usage_line(exc: Exception) -> str:
    """One line for a usage error: click's message (with its suggestion) and where help is."""
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None and ctx.command_path else "compliance"
    return f"error: {message} (see '{where} --help')"


def main() -> None:
    """Entry point: run the app, turning errors meant for people into one line and an exit code."""
    debug = "--debug" in sys.argv[1:]
    click_exception, usage_error = _click_exceptions()
    try:
        app(standalone_mode=False, prog_name="compliance")
    except ComplianceError as exc:
        if debug:
            raise
        # Escaped: messages quote user input and commands like pip install 'compliance[vllm]', not markup.
        err.print(f"[bold red]error:[/] {plain(exc)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except usage_error as exc:
        if debug:
            raise
        if exc.format_message().strip():  # empty after a group's help was shown for no arguments
            err.print(plain(usage_line(exc)), highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click_exception as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
