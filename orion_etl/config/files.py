"""Reading configuration files and describing their validation errors (no other config import).

Shared by `loader.py` (the settings file) and `dq.py` (the rules file), so neither imports the
other: the package's modules import in one direction, models -> dq -> files, loader -> models.
"""

from __future__ import annotations

import difflib
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from orion_etl.errors import ConfigError


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, reporting syntax, encoding and read errors with file and position."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "TOML files must be UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read file: {exc.strerror}") from None


def did_you_mean(word: str, choices: list[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model under `root` that holds the last key of `loc` (for "did you mean" on unknown keys)."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            model = field.annotation
            continue
        args = [a for a in typing.get_args(model) if a is not type(None)]
        model = args[-1] if args else None  # dict[str, M] / list[M] / M | None: the item model
        if model is None:
            return None
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            model = field.annotation if field else model
    while not (isinstance(model, type) and issubclass(model, BaseModel)):
        args = [a for a in typing.get_args(model) if a is not type(None)]
        if not args:
            return None
        model = args[-1]
    return model


def describe_validation_errors(
    exc: ValidationError,
    where: str,
    root: type[BaseModel],
    env_name: Callable[[tuple[int | str, ...]], str | None] | None = None,
) -> list[str]:
    """One line per validation error: file, key (or the variable `env_name` says set it), what is wrong."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        variable = env_name(loc) if env_name and loc else None
        if variable:
            key += f" (from environment {variable})"
        if err["type"] == "extra_forbidden":
            model = model_at(root, loc)
            known = list(model.model_fields) if model else []
            message = f"unknown key{did_you_mean(str(loc[-1]), known)}"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {key}: {message}")
    return problems
