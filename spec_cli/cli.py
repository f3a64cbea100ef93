"""The `spec` command line: options in, exit codes out. No maths here."""

from __future__ import annotations

import contextlib
import os
import sys

import typer

from spec_cli.commands.bench import bench
from spec_cli.commands.chat import chat
from spec_cli.commands.models import app as models_app
from spec_cli.commands.ngram import app as ngram_app
from spec_cli.commands.run import run

app = typer.Typer(
    name="spec",
    help="Faster local LLM decoding with speculative execution (llama.cpp, GGUF).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(run)
app.command()(chat)
app.command()(bench)
app.add_typer(models_app, name="models")
app.add_typer(ngram_app, name="ngram")


def _print_version(asked: bool) -> None:
    if not asked:
        return
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    typer.echo(f"spec {of('spec-cli')} (llama-cpp-python {of('llama_cpp_python')})")
    raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print versions and exit."
    ),
) -> None:
    """Faster local LLM decoding with speculative execution (llama.cpp, GGUF)."""


def _click_exceptions() -> tuple[type[BaseException], type[BaseException]]:
    """(ClickException, Abort) from the click that Typer uses (newer Typers vendor it)."""
    import importlib

    try:
        ex = importlib.import_module("typer._click.exceptions")
    except ImportError:
        ex = importlib.import_module("click.exceptions")
    return ex.ClickException, typer.Abort


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"spec: error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def _detach_stdout() -> None:
    """Point stdout at /dev/null, so Python's final flush cannot fail again on it."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _quiet_broken_pipe() -> None:
    # The reader went away (`spec run p | head`): stop quietly.
    _detach_stdout()
    sys.exit(0)


def main() -> None:
    """Entry point: expected errors print one line; tracebacks only with SPEC_DEBUG=1."""
    from spec_cli.errors import SpecError

    click_exception, abort = _click_exceptions()

    from spec_cli.envflags import flag

    debug = flag("SPEC_DEBUG")
    if sys.stdin is None:
        # Started with stdin closed (`spec run - <&-`): read it as empty, and hold its
        # descriptor so that no file opened later takes it.
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (lives as long as spec)
    if sys.stdout is None:
        # Started with stdout closed (`spec run p >&-`): the text would have nowhere to go,
        # and a file opened later could take its descriptor.
        _fail("standard output is closed: redirect it to a file or /dev/null", 1)
    try:
        rv = app(standalone_mode=False)
    except SpecError as e:
        if debug:
            raise
        _fail(str(e), e.exit_code)
    except abort:
        sys.stderr.write("\n")
        sys.exit(130)
    except click_exception as e:
        line = _click_line(e)
        if not line:  # `spec` alone: the help it asked for is shown
            sys.exit(e.exit_code)  # type: ignore[attr-defined]
        _fail(line, e.exit_code)  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        sys.exit(130)
    except BrokenPipeError:
        _quiet_broken_pipe()
    except SystemExit as e:
        # Typer turns EPIPE into exit(1) inside its handler for the OSError: still quiet, 0.
        if isinstance(e.__context__, BrokenPipeError):
            _quiet_broken_pipe()
        raise
    except OSError as e:
        if debug:
            raise
        _fail(_os_error_line(e), 1)
    except Exception as e:
        if debug:
            raise
        _fail(f"{type(e).__name__}: {e} (set SPEC_DEBUG=1 for a traceback)", 1)
    if isinstance(rv, int) and rv:
        sys.exit(rv)
    _flush_stdout()


def _click_line(e: BaseException) -> str:
    """A usage error as one line like every other error, pointing at the command's help
    (click's own takes three: usage, a hint and the error)."""
    line: str = e.format_message().strip().rstrip(".")  # type: ignore[attr-defined]
    ctx = getattr(e, "ctx", None)
    if line and ctx is not None:
        line = f"{line} (see {ctx.command_path} -h)"
    return line


def _os_error_line(e: OSError) -> str:
    """What the system refused, and on which file when it says. Errors without a file
    name come from writing the text out (a full disk: `> /dev/full`)."""
    what = e.strerror or str(e)
    return f"{e.filename}: {what}" if e.filename else f"could not write the output: {what}"


def _flush_stdout() -> None:
    # Python flushes stdout at exit, where a failure (a full disk: `> /dev/full`) prints
    # a raw "Exception ignored" instead of an error and exit code.
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
    except OSError as e:
        _detach_stdout()
        _fail(_os_error_line(e), 1)
