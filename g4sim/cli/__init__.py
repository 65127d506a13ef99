"""The ``g4sim`` command line: a thin root over one module per command group.

* ``plan`` — will it fit (``g4sim/cli/plan.py``);
* ``models``, ``gpus`` — what g4sim knows (``info.py``);
* ``sweep``, ``report``, ``capacity``, ``check`` — many evaluations (``tables.py``);
* ``generate``, ``profile``, ``validate``, ``calibrate`` — g4sim's own model (``measure.py``, torch lazily).

Commands import their pipeline modules inside the function so ``g4sim plan`` never loads torch,
pandas or plotly.  Data goes to stdout, diagnostics to stderr.  Every expected failure is turned
into one ``error:`` line and exit 2 by the error table below (the hf CLI's pattern).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from g4sim.cli import info, measure, plan, tables  # noqa: F401  (registers the commands)
from g4sim.cli import files  # noqa: F401  (registers `inspect`)
from g4sim.cli.app import app
from g4sim.errors import UserError


def _click_exception_types() -> dict[str, tuple[type, ...]]:
    """Usage-error classes of whichever click typer uses (typer >= 0.26 vendors its own copy)."""
    modules = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            modules.append(__import__(name, fromlist=["UsageError"]))
        except ImportError:
            pass
    return {kind: tuple(getattr(m, kind) for m in modules if hasattr(m, kind))
            for kind in ("NoArgsIsHelpError", "UsageError", "Abort", "Exit")}


def error_table() -> list[tuple[tuple[type[BaseException], ...], Callable[[BaseException], str], int]]:
    """Exception types -> the one line printed and the exit code, first match wins."""
    from g4sim.engines import EngineError
    from g4sim.hardware import ProfileError
    from g4sim.scenarios import ScenarioError
    from g4sim.spec import SpecError
    from g4sim.units import UnitError

    click = _click_exception_types()
    return [
        ((UserError, EngineError, ProfileError, ScenarioError, SpecError, UnitError), str, 2),
        (click["UsageError"], lambda exc: " ".join(exc.format_message().split()), 2),
        (click["Abort"] + (KeyboardInterrupt,), lambda exc: "aborted", 130),
        # a file that vanished or filled the disk between the up-front check and the write
        ((OSError,), lambda exc: f"cannot read or write {getattr(exc, 'filename', None) or 'a file'}: "
                                 f"{exc.strerror or exc.__class__.__name__}", 2),
    ]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every expected failure becomes one ``error:`` line on stderr and its exit code."""
    click = _click_exception_types()
    try:
        result = app(args=argv, standalone_mode=False, prog_name="g4sim")
    except click["NoArgsIsHelpError"]:
        sys.exit(0)
    except click["Exit"] as exc:
        sys.exit(exc.exit_code)
    except BaseException as exc:  # noqa: BLE001 — matched against the table; anything else re-raises
        for types, message, code in error_table():
            if isinstance(exc, types):
                print(f"error: {message(exc)}", file=sys.stderr)
                sys.exit(code)
        raise
    sys.exit(result if isinstance(result, int) else 0)
