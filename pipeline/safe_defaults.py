"""Refusing publicly known secrets on a service others can reach, and making fresh ones.

The defaults of the secret settings are printed in the repository for anyone to read: PII
hashed with them can be reversed by a dictionary attack, and links or webhooks signed with
them can be forged. They are fine for a laptop, so a service refuses them only when it
binds beyond loopback. ``webhouse init`` writes a config file with fresh random values.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Iterable
from typing import Any, Literal

from pipeline.errors import SettingsError
from pipeline.immutable import immutable
from pipeline.settings import ENV_PREFIX, Settings

Service = Literal["collector", "worker", "triggers", "sink"]

# Which secrets each service uses; a service is refused only the defaults it would use.
SERVICE_SECRETS: dict[Service, tuple[str, ...]] = {
    "collector": ("collector.write_keys", "collector.email.link_secrets"),
    "worker": ("triggers.webhook_secret",),
    "triggers": ("triggers.webhook_secret",),
    "sink": ("webhouse.pii_hmac_secret",),
}
SECRET_KEYS = ("collector.write_keys", "collector.email.link_secrets", "triggers.webhook_secret",
               "webhouse.pii_hmac_secret")  # fmt: skip


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name or an empty (every interface) address
        return False


def _value(model: Any, key: str) -> Any:
    for part in key.split("."):
        model = getattr(model, part)
    return model


def _default(key: str) -> Any:
    *path, name = key.split(".")
    model: Any = Settings
    for part in path:
        model = model.model_fields[part].annotation
    return model.model_fields[name].get_default(call_default_factory=True)


def uses_default(settings: Settings, key: str) -> bool:
    """True when the secret at ``key`` is empty or holds one of the published defaults."""
    value, default = _value(settings, key), _default(key)
    if isinstance(value, dict):  # write keys: a published key must not be accepted
        return not value or bool(set(value) & set(default))
    if isinstance(value, list):  # link secrets: any published key would still verify
        return not value or bool(set(value) & set(default)) or "" in value
    return not value or value == default


def default_secrets(settings: Settings, keys: Iterable[str] = SECRET_KEYS) -> list[str]:
    return [key for key in keys if uses_default(settings, key)]


def env_name(key: str) -> str:
    return ENV_PREFIX + key.replace(".", "__").upper()


def refuse_default_secrets(settings: Settings, service: Service, bind_host: str) -> None:
    """Raise SettingsError naming each default secret ``service`` would use on a reachable bind."""
    if is_loopback(bind_host):
        return
    found = default_secrets(settings, SERVICE_SECRETS[service])
    if not found:
        return
    names = "\n".join(f"  {key} (env {env_name(key)})" for key in found)
    raise SettingsError(
        f"refusing to start the {service} on {bind_host or 'every interface'} with a default secret "
        f"(public, so anyone can forge or reverse what it protects):\n{names}\n"
        "run `webhouse init` for a config file with fresh secrets, or set them yourself"
    )


@immutable
class FreshSecrets:
    write_key: str
    link_secret: str
    webhook_secret: str
    pii_hmac_secret: str

    @classmethod
    def generate(cls) -> FreshSecrets:
        return cls(
            write_key=secrets.token_urlsafe(24),
            link_secret=secrets.token_urlsafe(32),
            webhook_secret=secrets.token_urlsafe(32),
            pii_hmac_secret=secrets.token_urlsafe(32),
        )

    def toml(self, source: str = "default") -> str:
        """A WEBHOUSE_CONFIG file (TOML) holding the secrets, one table per section."""
        return (
            "# webhouse settings (`webhouse config` lists every key). Made by `webhouse init`:\n"
            "# fresh random secrets; keep this file private.\n\n"
            "[collector.write_keys]\n"
            f"{json.dumps(self.write_key)} = {json.dumps(source)}\n\n"
            "[collector.email]\n"
            f"link_secrets = [{json.dumps(self.link_secret)}]\n\n"
            "[triggers]\n"
            f"webhook_secret = {json.dumps(self.webhook_secret)}\n\n"
            "[webhouse]\n"
            f"pii_hmac_secret = {json.dumps(self.pii_hmac_secret)}\n"
        )

    def env(self, source: str = "default") -> str:
        """The same secrets as WEBHOUSE_* lines, for docker compose's ``env_file``."""
        lines = {
            "collector.write_keys": json.dumps({self.write_key: source}),
            "collector.email.link_secrets": json.dumps([self.link_secret]),
            "triggers.webhook_secret": self.webhook_secret,
            "webhouse.pii_hmac_secret": self.pii_hmac_secret,
        }
        head = "# webhouse secrets for docker compose (env_file). Made by `webhouse init`; keep it private.\n"
        return head + "".join(f"{env_name(key)}={value}\n" for key, value in lines.items())
