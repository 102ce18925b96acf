"""One way to read a command's settings: dataclasses, a YAML file of overrides, then command-line flags.

Every CLI of the project describes its settings as dataclasses (``field(metadata={"help": ...})``, ``Literal``
choices, ranges checked in ``__post_init__``) and parses them with `transformers.HfArgumentParser`, the parser
TRL's own scripts use (TRL's configs are dataclasses of the same kind and parse alongside ours). YAML values
are converted with the same argparse types as flags, so a file and the command line accept the same things.

Errors are one line and name where the bad value came from (``configs/x.yaml:12: n: invalid int value:
'four'`` or ``--n: invalid int value: 'four'``); :func:`parse_or_exit` prints it and exits with status 2.
Nothing is parsed lazily: a command validates everything before it writes anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

CONFIG_FLAG = "--config"


def help_field(text: str, **kw: Any) -> Any:
    """``dataclasses.field`` with the ``--help`` text HfArgumentParser shows (TRL's convention)."""
    return dataclasses.field(metadata={"help": text}, **kw)


class ConfigError(ValueError):
    """A setting that cannot be used; ``field`` names it so the message can say where it was set."""

    def __init__(self, field: str | None, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}" if field else message)


def check(ok: bool, field: str, message: str) -> None:
    """Raise a :class:`ConfigError` for ``field`` unless ``ok`` (for ``__post_init__`` range checks)."""
    if not ok:
        raise ConfigError(field, message)


def comma_list(values: Sequence[str]) -> list[str]:
    """A list flag's values with comma-separated items split too (``--methods raw oracle`` == ``raw,oracle``)."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def check_range(obj: Any, field: str, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, optional: bool = False) -> None:
    """``getattr(obj, field)`` is a finite number in [low, high] (``low_open``: > low); None if ``optional``."""
    v = getattr(obj, field)
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ConfigError(field, f"want a finite number, got {v!r}")
    if low is not None and (v <= low if low_open else v < low):
        raise ConfigError(field, f"must be {'>' if low_open else '>='} {low}, got {v!r}")
    if high is not None and v > high:
        raise ConfigError(field, f"must be <= {high}, got {v!r}")


class _ArgError(Exception):
    pass


def _parser_class() -> type:
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        def error(self, message: str) -> Any:  # argparse would print usage and exit; we want one line
            raise _ArgError(message)

    return Parser


def load_yaml(path: str | Path) -> tuple[dict, dict[str, int]]:
    """The top-level mapping of a YAML (or JSON) file and the line of each key (1-based)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(None, f"{path}: cannot read: {e.strerror or e}") from e
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(None, f"{path}:{line}: YAML syntax error: {what}") from e
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError(None, f"{path}:{line}: the top level must be a mapping of field: value, "
                                f"got a {type(data).__name__}")
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return {str(k): v for k, v in data.items()}, lines


def _convert(action: argparse.Action, value: Any) -> Any:
    """A YAML value through the argparse type of its flag (what the same text on the command line gives)."""
    if value is None or isinstance(value, dict):
        return value
    if action.nargs == "+":
        items = value if isinstance(value, list) else [value]
        return [_convert_one(action, v) for v in items]
    if isinstance(value, list):
        if action.type is str and action.choices is None:  # TRL's `str | list[str]` fields (report_to)
            return [_convert_one(action, v) for v in value]
        raise ValueError(f"want one value, got a list {value!r}")
    return _convert_one(action, value)


def _convert_one(action: argparse.Action, value: Any) -> Any:
    if isinstance(value, list | dict):
        raise ValueError(f"want a single value, got {value!r}")
    kind = action.type
    if kind is None or kind is str:
        if isinstance(value, bool | int | float) and kind is str:
            raise ValueError(f"want a string, got {value!r}")
        out = value
    elif kind is int and isinstance(value, bool):
        raise ValueError(f"invalid int value: {value!r}")
    elif kind is float and isinstance(value, bool):
        raise ValueError(f"invalid float value: {value!r}")
    elif kind is int and isinstance(value, float):
        raise ValueError(f"invalid int value: {value!r}")
    elif isinstance(value, str) or kind in (int, float):
        try:
            out = kind(value if isinstance(value, str) else str(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
            if kind in (int, float):  # argparse's wording, so a file and a flag say the same
                raise ValueError(f"invalid {kind.__name__} value: {value!r}") from e
            raise ValueError(str(e) or f"invalid value: {value!r}") from e
    else:
        out = kind(str(value).lower() if isinstance(value, bool) else str(value))
    if action.choices is not None and out not in action.choices:
        raise ValueError(f"invalid choice: {value!r} (choose from {', '.join(map(repr, action.choices))})")
    return out


def _flag_of(message: str) -> tuple[str | None, str]:
    """argparse's 'argument --n/-n: invalid int value' -> ('--n', 'invalid int value')."""
    if message.startswith("argument "):
        head, _, rest = message[len("argument "):].partition(": ")
        return head.split("/")[0], rest
    return None, message


def _str_unions(types: Sequence[type]) -> set[str]:
    """Fields declared as a union that includes str (argparse can give them only one of their types)."""
    out = set()
    for t in types:
        for name, hint in typing.get_type_hints(t).items():
            if str in typing.get_args(hint) and len(typing.get_args(hint)) > 1:
                out.add(name)
    return out


def _take(data: Mapping[str, Any], lines: Mapping[str, int], path: str | None,
          by_dest: Mapping[str, argparse.Action], values: dict[str, Any], origin: dict[str, str],
          takes_str: set[str]) -> None:
    """Check and convert a mapping of field: value (from a file or a caller) into ``values``."""
    for key, value in data.items():
        where = f"{path}:{lines.get(key, 1)}: " if path else ""
        action = by_dest.get(key)
        if action is None or not action.option_strings:
            close = difflib.get_close_matches(key, list(by_dest), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(None, f"{where}{key}: unknown field{hint}")
        try:
            values[key] = _convert(action, value)
        except ValueError as e:
            if not (isinstance(value, str) and key in takes_str):
                raise ConfigError(None, f"{where}{key}: {e}") from e
            values[key] = value  # a `str | bool` field (TRL's) given a string: the class checks it
        if path:
            origin[key] = where[:-2]


def parse_config(types: Sequence[type], argv: Sequence[str] | None = None,
                 defaults: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
                 checks: Sequence[Callable[..., None]] = (), config_file: bool = True) -> tuple:
    """Instances of ``types`` from defaults < ``data`` < ``--config FILE`` < flags; raises :class:`ConfigError`.

    ``defaults`` replaces dataclass defaults of fields the project sets differently (e.g. TRL fields);
    ``data`` is a mapping of field: value given by a caller (checked like a file's); ``checks`` get the
    instances and raise `ConfigError` for ranges the classes do not check themselves (TRL's fields).
    ``config_file=False``: no YAML ``--config`` (a command whose own ``config`` field names another file).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser_class()(list(types))
    by_dest = {a.dest: a for a in parser._actions if a.dest != "help"}
    config_path = None
    if config_file and CONFIG_FLAG in argv:
        i = argv.index(CONFIG_FLAG)
        if i + 1 >= len(argv):
            raise ConfigError(None, f"{CONFIG_FLAG}: expected a file")
        config_path = argv[i + 1]
        del argv[i : i + 2]
    values: dict[str, Any] = dict(defaults or {})
    origin: dict[str, str] = {}
    if data is not None:
        _take(data, {}, None, by_dest, values, origin, _str_unions(types))
    if config_path is not None:
        _take(*load_yaml(config_path), config_path, by_dest, values, origin, _str_unions(types))
    unset = object()  # not a string, so argparse never runs it through a flag's type
    for action in parser._actions:
        if action.dest != "help":
            action.default, action.required = unset, False
    try:
        namespace, rest = parser.parse_known_args(argv)
    except _ArgError as e:
        flag, what = _flag_of(str(e))
        raise ConfigError(None, f"{flag}: {what}" if flag else str(e)) from None
    values.update({k: v for k, v in vars(namespace).items() if v is not unset})
    if rest:
        flag = next((a for a in rest if a.startswith("-")), rest[0])
        name = flag.lstrip("-").split("=", 1)[0].replace("-", "_")
        close = difflib.get_close_matches(name, list(by_dest), n=1)
        hint = f" (did you mean --{close[0]}?)" if close else ""
        raise ConfigError(None, f"{flag.split('=', 1)[0]}: unknown option{hint}")
    for arg in argv:  # a flag overrides the file, so errors about its field name the flag
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            name = flag[2:].replace("-", "_")
            if name not in by_dest and name.startswith("no_"):
                name = name[3:]
            origin[name] = flag
    out = []
    for dtype in types:
        keys = {f.name for f in dataclasses.fields(dtype) if f.init}
        missing = [f.name for f in dataclasses.fields(dtype) if f.init and f.name not in values
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(None, f"--{missing[0]}: required")
        try:
            out.append(dtype(**{k: v for k, v in values.items() if k in keys}))
        except ConfigError as e:
            where = origin.get(e.field or "")
            raise ConfigError(None, f"{where}: {e}" if where else str(e)) from None
        except (ValueError, TypeError) as e:
            msg = " ".join(str(e).split())
            raise ConfigError(None, f"{config_path}: {msg}" if config_path else msg) from None
    try:
        for check_all in checks:
            check_all(*out)
    except ConfigError as e:
        where = origin.get(e.field or "")
        raise ConfigError(None, f"{where}: {e}" if where else str(e)) from None
    return tuple(out)


def peek(argv: Sequence[str] | None, name: str, default: Any, data: Mapping[str, Any] | None = None) -> Any:
    """The value a command line (``--name V``, ``--name=V``), its ``--config`` file or ``data`` gives ``name``.

    For the one setting that decides which dataclasses parse the rest (e.g. the objective picks TRL's
    SFTConfig, DPOConfig or KTOConfig); the full parse checks it again.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    value = (data or {}).get(name, default)
    if CONFIG_FLAG in argv and argv.index(CONFIG_FLAG) + 1 < len(argv):
        value = load_yaml(argv[argv.index(CONFIG_FLAG) + 1])[0].get(name, value)
    for i, a in enumerate(argv):
        if a == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
    return value


def parse_or_exit(types: Sequence[type], argv: Sequence[str] | None = None, prog: str | None = None,
                  defaults: Mapping[str, Any] | None = None, checks: Sequence[Callable[..., None]] = (),
                  positional: str | Sequence[str] = (), config_file: bool = True) -> tuple:
    """:func:`parse_config`, or one line ``error: ...`` on stderr and exit status 2; ``--help`` prints help.

    ``positional`` names the fields that the words before the first flag give: one field takes them all
    (``python -m serve http``, ``compare A B``), several take one word each. HfArgumentParser makes every
    field a flag, so the words are read as ``--<field> word``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        about = (types[0].__doc__ or "").strip().split("\n\n")[0] if types else ""
        parser = _parser_class()(list(types), prog=prog, description=" ".join(about.split()) or None)
        if config_file:
            parser.add_argument(CONFIG_FLAG, help="YAML file whose values replace the defaults (flags win)")
        dests = {a.dest for a in parser._actions}
        parser.set_defaults(**{k: v for k, v in (defaults or {}).items() if k in dests})  # help shows ours
        parser.print_help()
        raise SystemExit(0)
    args = _flag_words(args, [positional] if isinstance(positional, str) else list(positional))
    try:
        return parse_config(types, args, defaults, checks=checks, config_file=config_file)
    except ConfigError as e:
        exit_with(e)


def _flag_words(args: list[str], names: list[str]) -> list[str]:
    """The leading words (before the first flag) as ``--name word`` for the positional fields ``names``;
    words beyond them stay where they are (and are refused as unknown)."""
    n = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    if not names or not n:
        return args
    if len(names) == 1:
        return [f"--{names[0]}", *args]
    given = [w for name, word in zip(names, args[:n], strict=False) for w in (f"--{name}", word)]
    return given + args[len(given) // 2:]


def exit_with(error: Exception) -> typing.NoReturn:
    """The one-line form of a config error: ``error: ...`` on stderr, exit status 2."""
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
