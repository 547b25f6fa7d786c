"""coordctl's optional config file: named profiles of endpoints, TLS files, token and
command timeout, so that a cluster is named once rather than on every command line.

The file is TOML, at ``$COORD_CONFIG`` or else ``~/.config/coord/coordctl.toml``
(``$XDG_CONFIG_HOME/coord/coordctl.toml`` when that is set). Each table is a profile:

    [default]
    endpoints = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"

    [prod]
    endpoints = ["coord-0.prod:7379", "coord-1.prod:7379", "coord-2.prod:7379"]
    cacert = "/etc/coord/ca.pem"
    cert = "/etc/coord/client.pem"
    key = "/etc/coord/client-key.pem"
    token_file = "~/.config/coord/prod.token"
    command_timeout = 5

``--profile NAME`` (or ``$COORD_PROFILE``) picks one; without either, ``default`` is used
when the file has it. Precedence, highest first, for every setting: the command-line
flag, then the environment variable (COORD_ENDPOINTS, COORD_CACERT, COORD_CERT,
COORD_KEY, COORD_TOKEN), then the profile, then the built-in default. A profile named
on purpose that does not exist, an unknown setting or a file that does not parse is a
usage error.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any

CONFIG_ENV = "COORD_CONFIG"
PROFILE_ENV = "COORD_PROFILE"
DEFAULT_PROFILE = "default"
DEFAULT_COMMAND_TIMEOUT = 10.0

# setting -> (argparse destination, environment variable or "")
SETTINGS: dict[str, tuple[str, str]] = {
    "endpoints": ("endpoints", "COORD_ENDPOINTS"),
    "cacert": ("tls_cacert", "COORD_CACERT"),
    "cert": ("tls_cert", "COORD_CERT"),
    "key": ("tls_key", "COORD_KEY"),
    "token": ("token", "COORD_TOKEN"),
    "token_file": ("token", "COORD_TOKEN"),
    "command_timeout": ("command_timeout", ""),
}


class ConfigError(ValueError):
    """The config file or the profile asked for is unusable (a usage error)."""


def config_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "coord" / "coordctl.toml"


def load_profile(path: Path, name: str | None) -> dict[str, Any]:
    """The settings of profile ``name`` (None: ``default`` if present) in ``path``; {} when
    the file does not exist and no profile was asked for."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if name is not None:
            raise ConfigError(f"profile {name!r} asked for, but there is no config file {path}") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read the config file {path}: {err}") from None
    wanted = name or DEFAULT_PROFILE
    profile = data.get(wanted)
    if profile is None:
        if name is None:
            return {}
        raise ConfigError(f"no profile {name!r} in {path} (it has: {', '.join(sorted(data)) or 'none'})")
    if not isinstance(profile, dict):
        raise ConfigError(f"{path}: [{wanted}] must be a table of settings")
    unknown = sorted(set(profile) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"{path}: [{wanted}] has unknown settings {unknown}; known: {sorted(SETTINGS)}")
    return dict(profile)


def _value(setting: str, raw: Any, path: Path) -> Any:
    if setting == "endpoints":
        if isinstance(raw, list):
            return ",".join(str(e) for e in raw)
        return str(raw)
    if setting == "command_timeout":
        if not isinstance(raw, (int, float)) or isinstance(raw, bool) or raw <= 0:
            raise ConfigError(f"{path}: command_timeout must be a number of seconds above 0, not {raw!r}")
        return float(raw)
    if setting == "token_file":
        try:
            return Path(str(raw)).expanduser().read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"{path}: cannot read token_file {raw}: {err.strerror}") from None
    if setting in ("cacert", "cert", "key"):
        return str(Path(str(raw)).expanduser())
    return str(raw)


def apply_profile(args: argparse.Namespace, environ: dict[str, str] | None = None) -> None:
    """Fill the settings neither a flag nor an environment variable gave from the chosen
    profile, then the built-in defaults; records where the endpoints came from in
    ``args.endpoints_source``."""
    env = os.environ if environ is None else environ
    name = getattr(args, "profile", None) or env.get(PROFILE_ENV) or None
    path = config_path(dict(env))
    profile = load_profile(path, name)
    args.endpoints_source = ("--endpoints" if args.endpoints else "$COORD_ENDPOINTS" if env.get("COORD_ENDPOINTS")
                             else "the defaults: a bare coord-server, `make cluster`")
    for setting, raw in profile.items():
        dest, variable = SETTINGS[setting]
        if getattr(args, dest, None) is not None or (variable and env.get(variable)):
            continue
        setattr(args, dest, _value(setting, raw, path))
        if setting == "endpoints":
            args.endpoints_source = f"profile {name or DEFAULT_PROFILE!r} of {path}"
    if args.command_timeout is None:
        args.command_timeout = DEFAULT_COMMAND_TIMEOUT
