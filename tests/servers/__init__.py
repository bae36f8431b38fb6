"""Real servers for the tests: Dovecot (IMAP), aiosmtpd (SMTP) and PostgreSQL databases.

Every server listens on a free loopback port and keeps its state in a private temporary
directory; nothing here talks to anything that the tests did not start themselves.
"""

from tests.servers.dovecot import Dovecot, DovecotError, MailUser
from tests.servers.postgres import PgDatabase, PostgresUnavailable
from tests.servers.smtp import ReceivedMessage, SmtpServer, send

__all__ = [
    "Dovecot",
    "DovecotError",
    "MailUser",
    "PgDatabase",
    "PostgresUnavailable",
    "ReceivedMessage",
    "SmtpServer",
    "send",
]
