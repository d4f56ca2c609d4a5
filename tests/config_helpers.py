"""What the tests of stoker.toml share: write a config into a temp folder, load it, and get
its Config or its ConfigError (checked to be one line that names the file)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stoker.config import Config, ConfigError, ProgramConfig, load_config


def write(tmp_path: Path, text: str, name: str = "stoker.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.file == str(path)
    assert str(err).startswith(f"{path}: ")
    assert "\n" not in str(err)
    return err


def program(tmp_path: Path, body: str, name: str = "app") -> ProgramConfig:
    return load(tmp_path, f"[programs.{name}]\n{textwrap.dedent(body)}").programs[name]


def program_error(tmp_path: Path, body: str, name: str = "app") -> ConfigError:
    return error(tmp_path, f"[programs.{name}]\n{textwrap.dedent(body)}")
