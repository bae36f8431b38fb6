"""The one validated, frozen Settings object, loaded once at start and passed down.

The YAML keys are those of INTERFACE.md; everything else is optional with a default an
operator would expect. Relative paths resolve against the configuration file's folder.
Validation errors name the file, the dotted key and the line.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from maild.auth.oauth2 import OAuth2Config
from maild.businesstime.spec import parse_duration
from maild.errors import ConfigError
from maild.yamlfile import YamlDocument, load_yaml

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


class Security(StrEnum):
    """How to secure a mail connection. There is never a silent downgrade."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    base = ctx.get("base_dir")
    return base if isinstance(base, Path) else Path.cwd()


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    value = Path(os.path.expandvars(str(value))).expanduser()
    return value if value.is_absolute() else (_base_dir(info) / value).resolve()


class OAuth2Settings(_Model):
    """OAuth2 sign-in (Microsoft 365, Gmail): a refresh token for access tokens."""

    token_url: str
    client_id: str
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    refresh_token_file: Path  # keep it writable (StateDirectory): providers rotate it
    scope: str | None = None
    timeout: float = Field(default=30.0, gt=0)
    ca_file: Path | None = None

    @field_validator("client_secret_file", "refresh_token_file", "ca_file")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        path = _resolve(v, info)
        if path is not None and not path.is_file():
            raise ValueError(f"{path} does not exist")
        return path

    @model_validator(mode="after")
    def _usable(self) -> Self:
        try:
            self.to_config()
        except ConfigError as exc:
            raise ValueError(exc.reason) from None
        return self

    def to_config(self) -> OAuth2Config:
        return OAuth2Config(
            token_url=self.token_url, client_id=self.client_id,
            client_secret=self.client_secret.get_secret_value() if self.client_secret
            else None,
            client_secret_file=self.client_secret_file,
            refresh_token_file=self.refresh_token_file, scope=self.scope,
            timeout=self.timeout, ca_file=self.ca_file)


class Credentials(_Model):
    """A password given inline, in a file (systemd LoadCredential=) or in the environment,
    or OAuth2 sign-in."""

    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = None
    oauth2: OAuth2Settings | None = None

    @field_validator("password_file")
    @classmethod
    def _abs_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        path = _resolve(v, info)
        if path is not None and not path.is_file():
            raise ValueError(f"password file {path} does not exist")
        return path

    @field_validator("password_env")
    @classmethod
    def _env_set(cls, v: str | None) -> str | None:
        if v is not None and v not in os.environ:
            raise ValueError(f"environment variable {v} is not set")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [
            n for n in ("password", "password_file", "password_env", "oauth2")
            if getattr(self, n) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(given)}")
        if self.oauth2 is not None and not self.username:
            raise ValueError("oauth2 needs the username to sign in as")
        return self

    def secret(self) -> str | None:
        """The password, read now (so a rotated credential file is picked up)."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        if self.password_env is not None:
            return os.environ.get(self.password_env)
        return None


class ImapSettings(Credentials):
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = Security.TLS
    ca_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0)

    _abs_ca = field_validator("ca_file")(classmethod(lambda cls, v, info: _resolve(v, info)))

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security is Security.TLS else 143)


class MailboxSettings(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    imap: ImapSettings
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    batch_size: int = Field(default=200, ge=1, le=5000)
    idle: bool = True
    poll_interval: float = Field(default=60.0, gt=0)
    idle_renew: float = Field(default=300.0, gt=0)  # RFC 2177: re-issue IDLE well before 29 min
    use_move: bool | None = None  # None: use MOVE when the server has it
    # Where this mailbox's tickets start before the rules run (e.g. a billing address).
    level: int | None = Field(default=None, ge=1, le=4)
    department: str | None = None
    priority: str | None = None


class SmtpSettings(Credentials):
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = Security.STARTTLS
    ca_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0)

    _abs_ca = field_validator("ca_file")(classmethod(lambda cls, v, info: _resolve(v, info)))

    @property
    def effective_port(self) -> int:
        return self.port or {Security.TLS: 465, Security.STARTTLS: 587}.get(self.security, 25)


class SupportSettings(_Model):
    address: str
    name: str = "Support"
    ref_prefix: Annotated[str, Field(pattern=r"^[A-Z]{1,6}$")] = "T"
    secret: SecretStr | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if not _ADDRESS.match(v):
            raise ValueError(f"'{v}' is not an email address")
        return v.lower()

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]


class DatabaseSettings(_Model):
    url: str = "sqlite:///maild.db"

    @field_validator("url")
    @classmethod
    def _sqlite_relative(cls, v: str, info: ValidationInfo) -> str:
        prefix = "sqlite:///"
        if v.startswith(prefix) and not v.startswith(prefix + "/") and v != "sqlite://":
            rest = v[len(prefix):]
            if rest and rest != ":memory:":
                return prefix + str((_base_dir(info) / rest).resolve())
        return v


class OutboxSettings(_Model):
    max_attempts: int = Field(default=8, ge=1)
    backoff_initial: float = Field(default=30.0, gt=0)
    backoff_max: float = Field(default=3600.0, gt=0)
    batch_size: int = Field(default=100, ge=1)
    # SMTP connections a backlog is sent over at once (each sends its share in order).
    connections: int = Field(default=4, ge=1, le=32)


class WindowLimit(_Model):
    """At most `max` automatic messages within `window` (30m, 1h, 1d ...)."""

    window: float  # seconds
    max: int = Field(ge=0)

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v).total_seconds() if isinstance(v, str) else v


class SafetySettings(_Model):
    """Loop and abuse protection (RFC 3834 and beyond)."""

    # Windowed limits on automatic mail (acknowledgements, canned answers): they stop a
    # loop with an autoresponder that sends none of the RFC 3834 headers.
    per_recipient: list[WindowLimit] = [WindowLimit(window=3600, max=3),
                                        WindowLimit(window=86400, max=10)]
    per_ticket: list[WindowLimit] = [WindowLimit(window=3600, max=5)]
    total: list[WindowLimit] = [WindowLimit(window=3600, max=2000)]
    # An address that failed permanently gets no automatic mail for this long.
    suppress_days: float = Field(default=7.0, ge=0)
    # Authentication-Results from these servers (authserv-id) are believed.
    trusted_authserv_ids: list[str] = []
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    max_attachments: int = Field(default=100, ge=0)


class HttpSettings(_Model):
    """The optional metrics and health listener (off unless a port is given)."""

    listen: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)
    # /health fails when the last successful IMAP poll, or (with mail waiting) the last
    # successful send, is older than this.
    max_poll_age: float = Field(default=900.0, gt=0)
    max_send_age: float = Field(default=900.0, gt=0)


class DaemonSettings(_Model):
    # SIGTERM: finish the batch in hand, stop fetching, give the outbox this long, exit.
    shutdown_grace: float = Field(default=20.0, gt=0)
    # Processes that parse a backlog while the daemon writes to the database; None: one
    # fewer than the CPUs (at most 4), 0: parse in the daemon's own process.
    parse_workers: int | None = Field(default=None, ge=0, le=64)


class TicketSettings(_Model):
    # A reply to a ticket closed longer ago than this opens a new ticket linked to it;
    # to a resolved ticket, or one closed more recently, it reopens the ticket.
    reopen_days: float = Field(default=14.0, ge=0)


class TrainingSettings(_Model):
    """Trainees' drafts waiting for review (maild/training/): after `remind_after` the
    mentor is reminded, after `team_after` the mentor's team; each once a draft."""

    remind_after: float = 4 * 3600.0  # seconds ("4h" in the file)
    team_after: float = 8 * 3600.0

    @field_validator("remind_after", "team_after", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v).total_seconds() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.remind_after <= 0 or self.team_after < self.remind_after:
            raise ValueError("remind_after must be positive and team_after not shorter")
        return self


class KnowledgeSettings(_Model):
    """Solutions that flow back (maild/knowledge/): who accepts a proposed canned answer.
    Accepted answers are written into the `templates` folder (`<name>.<lang>.txt`)."""

    owners: list[Annotated[str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$")]] = []


class Settings(_Model):
    """Everything maild needs to know, validated."""

    config_path: Path
    database: DatabaseSettings = DatabaseSettings()
    support: SupportSettings
    mailboxes: Annotated[list[MailboxSettings], Field(min_length=1)]
    smtp: SmtpSettings
    rules: Path | None = None
    sla: Path | None = None
    templates: Path | None = None
    outbox: OutboxSettings = OutboxSettings()
    tickets: TicketSettings = TicketSettings()
    safety: SafetySettings = SafetySettings()
    http: HttpSettings = HttpSettings()
    daemon: DaemonSettings = DaemonSettings()
    training: TrainingSettings = TrainingSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    default_language: Annotated[str, Field(pattern=r"^(en|de)$")] = "en"
    log_level: Annotated[str, Field(pattern=r"^(debug|info|warning|error)$")] = "info"

    @field_validator("rules", "sla", "templates")
    @classmethod
    def _paths(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        path = _resolve(v, info)
        if path is not None and not path.exists():
            raise ValueError(f"{path} does not exist")
        return path

    @model_validator(mode="after")
    def _unique_mailboxes(self) -> Self:
        names = [m.name for m in self.mailboxes]
        if len(set(names)) != len(names):
            raise ValueError("mailbox names must be unique")
        return self


def default_config_path() -> Path:
    """-c/--config, else $MAILD_CONFIG, else ./config/maild.yaml (INTERFACE.md)."""
    env = os.environ.get("MAILD_CONFIG")
    return Path(env) if env else Path("config/maild.yaml")


def _message(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def settings_from_document(doc: YamlDocument) -> Settings:
    """Validate a parsed YAML document; the first error becomes a ConfigError with a line."""
    if not isinstance(doc.data, dict):
        raise doc.error("the configuration must be a mapping of keys", ())
    data = {**doc.data, "config_path": doc.path.resolve()}
    try:
        return Settings.model_validate(data, context={"base_dir": doc.path.resolve().parent})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise doc.error(_message(err), tuple(err["loc"])) from None


def load_settings(path: Path) -> Settings:
    """Load and validate the configuration file at `path`."""
    return settings_from_document(load_yaml(path))
