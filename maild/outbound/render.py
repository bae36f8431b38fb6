"""Templates: Jinja2's sandboxed environment with strict undefined and a typed context.

A template file is `<name>.<lang>.txt` in the admin's folder or the shipped one, `<lang>`
an ISO 639-1 code: a language in which any customer template exists is one customers are
answered in. It starts with `Subject: ...`, then a blank line, then the body. Customer text
enters only as data in the context; it is never compiled as template code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
)
from jinja2.sandbox import SandboxedEnvironment

from maild.errors import ConfigError

_FILE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)\.(?P<lang>[a-z]{2})\.txt$")
# Templates only staff read (in `staff_language`); the rest go to customers.
STAFF_TEMPLATES = frozenset({"notification", "wish_notification", "review", "proposal",
                             "refused", "digest", "queue", "report"})


@dataclass(frozen=True)
class TicketView:
    ref: str
    subject: str
    level: int
    department: str | None
    priority: str
    status: str


@dataclass(frozen=True)
class PersonView:
    name: str
    address: str
    verified: bool | None = None  # None: sender verification is not configured


@dataclass(frozen=True)
class MailContext:
    """Everything a template may use. Nothing else reaches it."""

    ticket: TicketView
    customer: PersonView
    support: PersonView
    message_excerpt: str
    headline: str = ""
    text: str = ""
    author: str = ""


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


_VIEW_FIELDS: dict[type, frozenset[str]] = {
    view: frozenset(f.name for f in fields(view)) for view in (TicketView, PersonView)}


class _Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox, with a short way to the fields of our own views: they hold plain
    data (text, numbers, booleans) meant to be read by templates. Every other attribute,
    on anything else, takes the sandbox's full checks."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute in _VIEW_FIELDS.get(type(obj), ()):
            return getattr(obj, attribute)
        return super().getattr(obj, attribute)


def shipped_templates() -> Path:
    """The templates that come with maild (the top-level `templates/` of the project)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "shipped_templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("the shipped templates are missing from this installation")


class Templates:
    """Renders named templates in a language, the admin's folder before the shipped one.

    A template is compiled once and kept: the files are read again only by a new
    `Templates` (SIGHUP), after they have been checked, never behind the admin's back
    while the daemon runs.
    """

    def __init__(self, custom: Path | None = None) -> None:
        self._custom = custom
        folders = [str(p) for p in (custom, shipped_templates()) if p is not None]
        self._env = _Sandbox(
            loader=ChoiceLoader([FileSystemLoader(folders)]),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,  # a line holding only a block tag leaves no blank line
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._folders = folders
        self._compiled: dict[str, Template | None] = {}  # file name -> template (None: none)

    def names(self) -> list[str]:
        return sorted(self._env.list_templates(extensions=["txt"]))

    def files(self) -> dict[str, set[str]]:
        """Template name -> the languages it exists in (well-named files only)."""
        out: dict[str, set[str]] = {}
        for file in self.names():
            found = _FILE.match(file)
            if found:
                out.setdefault(found["name"], set()).add(found["lang"])
        return out

    def languages(self) -> tuple[str, ...]:
        """The languages customers can be answered in: those of any customer template."""
        return tuple(sorted({lang for name, langs in self.files().items()
                             if name not in STAFF_TEMPLATES for lang in langs}))

    def missing(self, default_language: str, staff_language: str) -> list[str]:
        """Warnings for translations that are not there: a customer template missing in a
        language other customer templates have (or in the default language), a staff
        template missing in the staff language. Such mail falls back to English."""
        files = self.files()
        customer_languages = set(self.languages()) | {default_language}
        out = []
        for name, langs in sorted(files.items()):
            wanted = {staff_language} if name in STAFF_TEMPLATES else customer_languages
            for lang in sorted(wanted - langs):
                why = ("the staff language" if name in STAFF_TEMPLATES else
                       "the default language" if lang == default_language
                       and lang not in self.languages() else
                       "other templates exist in it")
                out.append(f"template {name}.{lang}.txt is missing ({why}); "
                           f"{name} mail in '{lang}' falls back to English")
        return out

    def render(self, name: str, language: str, context: MailContext) -> Rendered:
        """Render `name` in `language`, falling back to English."""
        for lang in dict.fromkeys((language, "en")):
            template = self._template(f"{name}.{lang}.txt")
            if template is None:
                continue
            text = template.render(
                ticket=context.ticket, customer=context.customer, support=context.support,
                message_excerpt=context.message_excerpt, headline=context.headline,
                text=context.text, author=context.author,
            )
            return split_subject(text, f"{name}.{lang}.txt")
        raise ConfigError(f"template '{name}' not found in {', '.join(self._folders)}")

    @property
    def custom(self) -> Path | None:
        """The admin's folder (where canned answers accepted by mail are written)."""
        return self._custom

    def reloaded(self) -> Templates:
        """The same folders read again: a canned answer accepted by mail is used at once."""
        return Templates(self._custom)

    def source(self, file: str) -> str | None:
        """A template file's text as written (for the catalogue of canned answers)."""
        try:
            text, _, _ = self._env.loader.get_source(self._env, file)  # type: ignore[union-attr]
        except TemplateNotFound:
            return None
        return text

    def _template(self, file: str) -> Template | None:
        if file not in self._compiled:
            try:
                self._compiled[file] = self._env.get_template(file)
            except TemplateNotFound:
                self._compiled[file] = None
        return self._compiled[file]

    def check(self, sample: MailContext) -> list[str]:
        """Compile and render every template with a sample context; return the names."""
        names = self.names()
        for file in names:
            found = _FILE.match(file)
            if not found:
                raise ConfigError("template files are named <name>.<lang>.txt, <lang> an "
                                  "ISO 639-1 code such as en, de or fr", file=file)
            name, lang = found["name"], found["lang"]
            try:
                self.render(name, lang, sample)
            except TemplateError as exc:
                line = getattr(exc, "lineno", None)
                raise ConfigError(f"template error: {exc}", file=file, line=line) from None
        return names


def split_subject(text: str, file: str) -> Rendered:
    head, sep, body = text.partition("\n\n")
    if not sep or not head.lower().startswith("subject:"):
        raise ConfigError("a template starts with 'Subject: ...' and a blank line", file=file)
    return Rendered(subject=head[len("subject:"):].strip(), body=body)
