"""The one validated, frozen Settings object, loaded once at start and passed down.

The YAML keys are those of INTERFACE.md; everything else is optional with a default an
operator would expect. Relative paths resolve against the configuration file's folder.
Validation errors name the file, the dotted key and the line.
"""

from __future__ import annotations

import os
import re
from datetime import time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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

from maild.auth.config import OAuth2Config
from maild.businesstime.durations import parse_duration
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
    # Agents' replies go to the requester with the confirmed participants (those the
    # customers put in To/Cc, or agents added with #cc add) in Cc.
    reply_to_all: bool = True
    # The lifecycle (maild/lifecycle/): a ticket waiting for the customer is reminded once
    # after `remind_after` business days of the organisation's calendar and resolved
    # `resolve_after` business days after the reminder; a resolved ticket is closed after
    # `close_after_days`. 0 turns each off.
    remind_after: int = Field(default=3, ge=0, le=365)
    resolve_after: int = Field(default=4, ge=0, le=365)
    close_after_days: float = Field(default=7.0, ge=0)


class DigestSettings(_Model):
    """The agents' daily digest (maild/digest/): at `at` (organisation time) on business
    days, sent only where a time is configured: a desk chooses its morning, and a daemon
    started mid-day never surprises anyone with one. Nothing goes to someone with nothing
    open unless `empty`; teams get their unassigned tickets unless `teams` is false."""

    at: time | None = None
    empty: bool = False
    teams: bool = True


class ReportSchedule(_Model):
    """A KPI report mailed on a schedule (maild/reports/job.py): the past full day, week or
    month, at `at` (organisation time) on the day `on` names (a week's weekday, a month's
    day; the first by default), to `to`."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,40}$")] = "weekly"
    to: Annotated[list[Annotated[str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$")]],
                  Field(min_length=1)]
    every: Literal["day", "week", "month"] = "week"
    on: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                "sunday"] | Annotated[int, Field(ge=1, le=28)] | None = None
    at: time = time(7, 0)
    by: Literal["department", "level", "agent", "mailbox"] = "department"

    @model_validator(mode="after")
    def _on(self) -> Self:
        if self.every == "week" and isinstance(self.on, int):
            raise ValueError("on: a weekday (monday ... sunday) for a weekly report")
        if self.every == "month" and isinstance(self.on, str):
            raise ValueError("on: a day of the month (1-28) for a monthly report")
        if self.every == "day" and self.on is not None:
            raise ValueError("on: not for a daily report")
        return self


class CsatSettings(_Model):
    """The satisfaction survey after resolution, and the satisfaction guarantee."""

    enabled: bool = True
    delay: timedelta = timedelta(hours=24)  # after the resolution, as the common desks do
    per_customer_days: float = Field(default=30.0, ge=0)  # at most one survey per customer
    skip_departments: list[str] = []
    skip_levels: list[int] = []
    # The guarantee: a rating at or below this, or a comment with one of these words,
    # opens a management case.
    threshold: int = Field(default=2, ge=0, le=5)
    words: list[str] = ["complaint", "beschwerde", "unacceptable", "inakzeptabel",
                        "lawyer", "anwalt", "réclamation", "inacceptable"]

    @field_validator("delay", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v


class ClusterSettings(_Model):
    """Several daemons on one PostgreSQL (maild/cluster)."""

    # A daemon that stops renewing its mailboxes' leases (killed, hung, cut off from the
    # database) loses them after this long; another daemon then takes them over.
    lease_seconds: float = Field(default=15.0, ge=1.0)


class WishSettings(_Model):
    """The feature-request register (maild/wishes/, README "Feature requests")."""

    # Who may change a wish's status by mail (`#wish-status KEY STATUS [REASON]`); they
    # are told of new wishes and of re-reviews.
    quality_management: list[str] = []
    # Each department's own quality management (by the rules' department names): told when
    # a wish of theirs is handed to them for review, and they may set its status by mail.
    departments: dict[str, list[str]] = {}
    # A rejected wish goes back to under_review when this many distinct customers asked
    # for it since the rejection.
    rereview_customers: int = Field(default=5, ge=1)
    # Statuses whose customers are told by mail (template wish_done), once per customer.
    notify_customers_on: list[Literal["done", "rejected"]] = ["done"]
    # How similar (0-100, maild/wishes/match.py) a title must be to join an existing wish.
    match_score: float = Field(default=75.0, ge=0, le=100)

    @field_validator("quality_management")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        return _email_addresses(v)

    @field_validator("departments")
    @classmethod
    def _department_addresses(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return {name: _email_addresses(addresses) for name, addresses in v.items()}


def _email_addresses(addresses: list[str]) -> list[str]:
    for address in addresses:
        if not _ADDRESS.match(address):
            raise ValueError(f"'{address}' is not an email address")
    return [a.lower() for a in addresses]


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
    csat: CsatSettings = CsatSettings()
    cluster: ClusterSettings = ClusterSettings()
    safety: SafetySettings = SafetySettings()
    http: HttpSettings = HttpSettings()
    daemon: DaemonSettings = DaemonSettings()
    # ISO 639-1 codes. The default answers a customer whose language has no templates;
    # staff mail (notifications to teams and agents) is in the organisation's language,
    # `staff_language`, the default language unless set. `maild check` says when either
    # has no templates.
    default_language: Annotated[str, Field(pattern=r"^[a-z]{2}$")] = "en"
    staff_language: Annotated[str | None, Field(pattern=r"^[a-z]{2}$")] = None
    wishes: WishSettings = WishSettings()
    # The organisation's time zone: where the report's days, weeks and months begin. UTC by
    # default, so that an unset key never shifts figures by a guess; SLA calendars keep
    # their own zones.
    timezone: str = "UTC"
    training: TrainingSettings = TrainingSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    digest: DigestSettings = DigestSettings()
    reports: list[ReportSchedule] = []
    log_level: Annotated[str, Field(pattern=r"^(debug|info|warning|error)$")] = "info"

    @field_validator("rules", "sla", "templates")
    @classmethod
    def _paths(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        path = _resolve(v, info)
        if path is not None and not path.exists():
            raise ValueError(f"{path} does not exist")
        return path

    @field_validator("reports")
    @classmethod
    def _report_names(cls, v: list[ReportSchedule]) -> list[ReportSchedule]:
        names = [r.name for r in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two reports named {', '.join(twice)}: give each a name")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{v}' (use an IANA name such as "
                             "Europe/Berlin)") from None
        return v

    @property
    def staff_language_or_default(self) -> str:
        return self.staff_language or self.default_language

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
