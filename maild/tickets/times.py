"""Times as staff read them: local to the calendar the desk works by, with how much business
time is left ("Mon 28 Dec, 10:30 (in 1 h 12 min of business time)"). JSON and events keep
ISO 8601 with the offset; this is only for what people read in mail."""

from __future__ import annotations

from datetime import datetime, timedelta

from maild.businesstime.calendar import BusinessCalendar, business_time_between

_DAYS = {"en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
         "de": ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"),
         "fr": ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim.")}
_MONTHS = {"en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                  "Dec"),
           "de": ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sep.",
                  "Okt.", "Nov.", "Dez."),
           "fr": ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.",
                  "oct.", "nov.", "déc.")}
_WORDS = {"en": ("in {} of business time", "{} of business time ago", "in {}", "{} ago"),
          "de": ("in {} Geschäftszeit", "vor {} Geschäftszeit", "in {}", "vor {}"),
          "fr": ("dans {} ouvrées", "il y a {} ouvrées", "dans {}", "il y a {}")}


def duration(value: timedelta) -> str:
    """`1 h 12 min`, `45 min`, `26 h`: hours and minutes, rounded down to the minute."""
    minutes = int(abs(value).total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def staff_time(at: datetime, calendar: BusinessCalendar, now: datetime,
               language: str = "en") -> str:
    """`at` in the calendar's zone, and how far it is from `now` in the calendar's business
    time (plain time for a calendar that is always open)."""
    lang = language if language in _DAYS else "en"
    local = at.astimezone(calendar.tz)
    shown = (f"{_DAYS[lang][local.weekday()]} {local.day} {_MONTHS[lang][local.month - 1]}, "
             f"{local:%H:%M}")
    always = calendar.name == "24x7"
    if at >= now:
        left = business_time_between(calendar, now, at) if not always else at - now
        words = _WORDS[lang][2 if always else 0]
    else:
        left = business_time_between(calendar, at, now) if not always else now - at
        words = _WORDS[lang][3 if always else 1]
    return f"{shown} ({words.format(duration(left))})"
