"""The one error family a command line reports as a single line (exit 2) instead of a traceback.

Bad input the user can fix (a data file, an output folder that is not ours, a run directory another
process holds) raises an `InputError`; a traceback then always means a bug in the project.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ir_core.config import exit_with


class InputError(Exception):
    """Input the user must fix; ``str(e)`` is one line that says where and what."""


class DataError(InputError, ValueError):
    """A data file that cannot be used, located precisely: ``path:line: field: reason``.

    `row` is a 1-based line number (an int) or, with ``unit`` set, a record id in a file without lines
    (e.g. ``unit="node"`` for a pickled knowledge base).
    """

    def __init__(self, path: str, row: int | str | None, fld: str | None, reason: str, unit: str | None = None):
        where = str(path)
        if row is not None:
            where += f": {unit} {row}" if unit else f":{row}"
        super().__init__(f"{where}: {fld}: {reason}" if fld else f"{where}: {reason}")
        self.path, self.row, self.field, self.reason = str(path), row, fld, reason


def run_main(main: Callable[..., int | None], argv: Sequence[str] | None = None) -> int:
    """Call a command line's ``main(argv)``; an `InputError` becomes one ``error:`` line and exit 2.

    The hook for every ``if __name__ == "__main__"``: ``raise SystemExit(run_main(main))``. It also
    scrubs secrets from every log record from here on (stderr ends up in SLURM and CI logs).
    """
    from ir_core.secrets import install_log_scrubber

    install_log_scrubber()
    try:
        return main(argv) or 0
    except InputError as e:
        exit_with(e)
