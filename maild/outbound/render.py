"""Templates: Jinja2's sandboxed environment with strict undefined and a typed context.

A template file is `<name>.<lang>.txt` in the admin's folder or the shipped one. It starts
with `Subject: ...`, then a blank line, then the body. Customer text enters only as data in
the context; it is never compiled as template code.
"""

from __future__ import annotations

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

LANGUAGES = ("en", "de")


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
            stem, _, _ = file.rpartition(".")
            name, _, lang = stem.rpartition(".")
            if not name or lang not in LANGUAGES:
                raise ConfigError("template files are named <name>.<en|de>.txt", file=file)
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
