"""The ``kumo-edge`` command line.

Errors are reported as one line on stderr with a non-zero exit code (1 for bad input, 2 for
bad usage), never a traceback (``-v`` twice shows one). Outputs are never overwritten without
``--overwrite`` and are written under a temporary name, renamed when complete. Progress bars
show on a terminal and stay quiet in pipes.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from . import batch, bench, data, demo, run  # noqa: F401 - each registers its commands
from ._base import (  # noqa: F401 - the package's public names
    CLASS_CODES,
    cli,
    handle_errors,
    model_options,
    raster_options,
    removal_options,
    sample_scene_path,
)
from .data import raster_info, synthesize_raster  # noqa: F401


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # handled like Ctrl-C: outputs discarded, exit code 130


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``kumo-edge`` console script (SIGTERM is handled like SIGINT)."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = cli.main(args=argv, prog_name="kumo-edge", standalone_mode=False)
    except click.UsageError as exc:  # one line, not click's three
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        raise SystemExit(exc.exit_code) from None
    except click.Abort:
        click.echo("Error: aborted", err=True)
        raise SystemExit(1) from None
    raise SystemExit(rc if isinstance(rc, int) else 0)
