"""``webhouse init``: a config file with fresh random secrets (and, for docker compose, an env file).

The services refuse the published default secrets when they bind beyond loopback
(pipeline/safe_defaults.py); this is the one-step way to replace them all.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pipeline.errors import SettingsError
from pipeline.safe_defaults import FreshSecrets
from pipeline.settings import CONFIG_FILE_ENV, Settings


def _write_private(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        raise SettingsError(f"{path} exists; pass --force to replace it (its secrets would change)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _init(args: argparse.Namespace, settings: Settings) -> int:
    fresh = FreshSecrets.generate()
    written = []
    if args.config is not None:
        _write_private(args.config, fresh.toml(args.source), args.force)
        written.append(args.config)
    if args.env_file is not None:
        _write_private(args.env_file, fresh.env(args.source), args.force)
        written.append(args.env_file)
    for path in written:
        print(f"wrote {path} (fresh secrets, mode 600)")
    if args.config is not None:
        print(f"use it with:  export {CONFIG_FILE_ENV}={args.config.resolve()}")
    print(f"write key (Basic auth user of your touchpoints): {fresh.write_key}")
    return 0


def register(sub: Any) -> None:
    init = sub.add_parser("init", help="write a config file with fresh random secrets and write key")
    init.add_argument("--config", type=Path, default=Path("webhouse.toml"), help="TOML file to write")
    init.add_argument(
        "--env-file", type=Path, help="also write the same secrets as WEBHOUSE_* lines (docker compose)"
    )
    init.add_argument("--source", default="default", help="source name of the new write key")
    init.add_argument("--force", action="store_true", help="replace existing files")
    init.set_defaults(func=_init)
