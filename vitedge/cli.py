"""The `vitedge` command line. Each command lives in vitedge/commands/<name>.py.

Errors the user can fix (VitedgeError, bad options) print one line on stderr and exit non-zero;
no traceback unless VITEDGE_DEBUG=1. Command modules import TensorFlow only inside the
functions that need it, so `predict` and `bench` start fast and run without it.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from . import __version__
from .errors import VitedgeError

# command name -> module under vitedge.commands that defines a click command of that name
COMMANDS = {
    "variants": "variants",
    "build": "build",
    "info": "info",
    "export": "export",
    "data": "data",
    "train": "train",
    "predict": "predict",
    "bench": "bench",
    "profile": "profile",
    "doctor": "doctor",
}


class LazyGroup(click.Group):
    """Loads a command's module only when that command runs (or help lists it)."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"vitedge.commands.{COMMANDS[name]}")
        return getattr(module, name.replace("-", "_"))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="vitedge")
def cli():
    """Build, export (TFLite, ONNX, int8), run and benchmark Vision Transformers on edge devices.

    \b
    Examples:
      vitedge variants
      vitedge build --variant vit-ti16 -o vit-ti16.keras
      vitedge info vit-ti16.keras
    """


def _fail(message: str, code: int) -> None:
    click.echo(f"vitedge: error: {message}", err=True)
    sys.exit(code)


def main(argv=None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="vitedge", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        _fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except VitedgeError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.exit(141)
    except Exception as exc:  # last resort: still one line, unless debugging
        if os.environ.get("VITEDGE_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _fail(f"internal error: {type(exc).__name__}: {msg[:300]} (VITEDGE_DEBUG=1 shows the traceback)", 3)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
