"""Output folders that never destroy what is not theirs, and are replaced in one step.

A command that writes a folder (a benchmark build, a model conversion) may only replace a folder that
does not exist, is empty, or carries that command's own marker file. It builds the new content in a
staging sibling (``.<name>.partial``) and swaps it in with two renames, so a reader sees the old folder
or the new one, and a killed run leaves the old one untouched. Anything else is refused with a message
saying how to proceed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ir_core.errors import InputError
from ir_core.locks import sibling_lock

STAGING_MARKER = ".ir-staging"  # written first into a staging folder: a leftover one is ours to delete


class OutputDirError(InputError):
    """The output folder holds something this command did not write."""


def is_owned(out: Path, marker: str, legacy: Callable[[Path], bool] | None = None) -> bool:
    """True when `out` carries `marker` (or, for outputs written before markers existed, passes `legacy`)."""
    return (out / marker).is_file() or bool(legacy and legacy(out))


def check_output_dir(out: str | Path, marker: str, owner: str,
                     legacy: Callable[[Path], bool] | None = None) -> Path:
    """`out` if this command may (re)write it; raises `OutputDirError` naming what to do otherwise."""
    out = Path(out)
    how = f"choose a new --out, or move or delete {out} yourself"
    if out.is_symlink():
        raise OutputDirError(f"{out} is a symbolic link; refusing to replace it ({how}, or pass its target)")
    if not out.exists():
        return out
    if not out.is_dir():
        raise OutputDirError(f"{out} exists and is not a folder; refusing to replace it ({how})")
    if not any(out.iterdir()) or is_owned(out, marker, legacy):
        return out
    raise OutputDirError(f"{out} holds files that {owner} did not write (no {marker} in it); "
                         f"refusing to replace it ({how})")


def _clear_stale_staging(staging: Path) -> None:
    if not staging.exists() and not staging.is_symlink():
        return
    if staging.is_dir() and not staging.is_symlink() and (staging / STAGING_MARKER).is_file():
        shutil.rmtree(staging)  # left by a killed run of ours (we hold the lock, so no live run uses it)
        return
    raise OutputDirError(f"{staging} exists and is not a staging folder of ours; move or delete it yourself")


def swap_in(staged: Path, out: Path) -> None:
    """Put `staged` at `out`, replacing an old `out` (caller has checked ownership) with two renames."""
    if not out.exists():
        os.rename(staged, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    os.rename(out, old)
    try:
        os.rename(staged, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def replace_dir(out: str | Path, marker: str, owner: str,
                legacy: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces `out` (which must pass `check_output_dir`).

    The caller writes everything, its `marker` included, into the yielded folder. On an exception the
    staging folder is removed and `out` is left as it was. A lock beside `out` keeps two runs apart.
    """
    out = Path(out)
    check_output_dir(out, marker, owner, legacy)
    out.parent.mkdir(parents=True, exist_ok=True)
    with sibling_lock(out):
        staging = out.with_name(f".{out.name}.partial")
        _clear_stale_staging(staging)
        staging.mkdir()
        (staging / STAGING_MARKER).write_text(f"{owner} pid {os.getpid()}\n")
        try:
            yield staging
            if not (staging / marker).is_file():
                raise RuntimeError(f"{owner} wrote no {marker} into {staging}")
            check_output_dir(out, marker, owner, legacy)  # again: someone may have written there meanwhile
            (staging / STAGING_MARKER).unlink()
            swap_in(staging, out)
        except BaseException:
            _remove_staging(staging)
            raise


def _remove_staging(staging: Path) -> None:
    """Delete a failed run's staging folder; if a writer thread of it is still busy there, keep it marked."""
    shutil.rmtree(staging, ignore_errors=True)
    if staging.is_dir():
        try:
            (staging / STAGING_MARKER).write_text("left by a failed run\n")
        except OSError:
            pass
