"""Value semantics, one place: durations, cron expressions, tolerances and the normalisation steps.

The spec (validation), the diff (comparison) and the rules (conditions) read values the same way
because they all use this module. Importing it is cheap (pandas only inside the functions).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
# What parse_duration takes, as a JSON Schema pattern (a trigger form's field): whole numbers and a unit. At
# most 8 digits, so the form never lets a number through that overflows (the task checks the range).
DURATION_PATTERN = r"^\s*\d{1,8}\s*[smhdw]\s*$"

# Airflow's cron presets (airflow.utils.dates.cron_presets): the core checks an expression the way
# Airflow's CronTriggerTimetable.validate() does, with croniter, without importing Airflow (a test in
# tests/provider checks the two agree).
CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}


def check_cron(expression: str) -> None:
    """Raise ``ValueError`` with croniter's reason when Airflow would refuse ``expression``."""
    from croniter import CroniterBadCronError, CroniterBadDateError, croniter

    try:
        croniter(CRON_PRESETS.get(expression, expression))
    except (CroniterBadCronError, CroniterBadDateError) as exc:
        raise ValueError(f"{expression!r} is not a cron expression Airflow accepts: {exc}") from None


NormalizeStep = Literal["trim", "casefold", "nfc", "null_equivalents", "number", "timestamp"]
TYPE_STEPS = ("number", "timestamp")  # steps that choose how values compare, not how text is rewritten
NULL_EQUIVALENTS = ("", "n/a", "na", "null", "none", "?")


def duration_seconds(text: str, *, fraction: bool = False) -> float:
    """Seconds in ``90s``, ``15m``, ``6h``, ``7d`` or ``2w`` (``1.5h`` too when ``fraction``)."""
    match = _DURATION_RE.match(str(text))
    if not match or (not fraction and "." in match.group(1)):
        raise ValueError(f"{text!r} is not a duration; write a number and a unit, e.g. 30m, 6h, 7d")
    return float(match.group(1)) * DURATION_UNITS[match.group(2)]


def parse_duration(text: str) -> int:
    """Whole seconds in a spec duration such as ``90s``, ``15m``, ``6h``, ``7d`` or ``2w``."""
    return int(duration_seconds(text))


def text_steps(steps: Sequence[str]) -> list[str]:
    """The steps that rewrite text (all but ``number`` and ``timestamp``)."""
    return [step for step in steps if step not in TYPE_STEPS]


def normalize(series: pd.Series, steps: Sequence[str]) -> pd.Series:
    """The column as nullable text with the text steps applied in order."""
    import pandas as pd

    out = series.astype("string")
    for step in steps:
        if step == "trim":
            out = out.str.strip()
        elif step == "casefold":
            out = out.str.casefold()
        elif step == "nfc":
            out = out.map(lambda v: unicodedata.normalize("NFC", v) if isinstance(v, str) else v).astype("string")
        elif step == "null_equivalents":
            out = out.mask(out.str.strip().str.casefold().isin(NULL_EQUIVALENTS), pd.NA)
    return out


@dataclass(frozen=True)
class Tolerance:
    """How far two values may be apart and still be equal: absolute, relative (of the actual), or a duration."""

    absolute: float = 0.0
    relative: float = 0.0
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | float) -> Tolerance:
        """``0.01`` (absolute), ``1%`` (relative), ``90s`` / ``5m`` / ``2h`` / ``1d`` (timestamps)."""
        raw = str(text).strip()
        try:
            if raw.endswith("%"):
                tolerance = cls(relative=float(raw[:-1]) / 100)
            elif raw[-1:] in DURATION_UNITS:
                tolerance = cls(seconds=duration_seconds(raw, fraction=True))
            else:
                tolerance = cls(absolute=float(raw))
        except ValueError:
            raise ValueError(
                f"{text!r} is not a tolerance; write 0.01 (absolute), 1% (relative) or 5m (duration)"
            ) from None
        values = (tolerance.absolute, tolerance.relative, tolerance.seconds or 0.0)
        if any(v != v or v in (float("inf"), float("-inf")) for v in values):
            raise ValueError(f"{text!r} is not a tolerance; write 0.01 (absolute), 1% (relative) or 5m (duration)")
        if any(v < 0 for v in values):  # every equal value would differ, and be rewritten
            raise ValueError(f"{text!r} is a negative tolerance; a tolerance is how far apart values may be: 0 or more")
        return tolerance


# A time of day, and one followed by its offset (or Z): ISO 8601 text with a time but no offset is a naive local
# time, which means nothing until someone says where it was written.
_HAS_TIME = r"\d{4}-?\d{2}-?\d{2}[Tt ]\d{2}|\d{1,2}:\d{2}"  # 2026-01-01T10, 20260101T1000, 10:00
_HAS_OFFSET = r"[Tt ]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"


class NaiveTimes(ValueError):
    """Times without a time zone, where the source names none (``sources.<side>.timezone``)."""


def to_instants(values: pd.Series, zone: str | None, what: str) -> pd.Series:
    """The values as UTC instants (NaT where a value does not read as a time), whatever form they are in:
    aware datetimes, naive datetimes or text (ISO 8601). A naive time (a datetime without a zone, text with a
    time of day and no offset) is read in ``zone``; without one it raises ``NaiveTimes`` naming ``what`` and
    examples, never taken as UTC in silence. Dates (no time of day) need no zone."""
    import pandas as pd

    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values):
        timed = values.notna() & (values != values.dt.normalize())
        if not timed.any():  # dates: the same day whatever the zone, as dates written as text are
            return values.dt.tz_localize("UTC")
        if zone is None:
            raise NaiveTimes(_naive_message(what, values[timed]))
        return values.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    text = values.astype("string").str.strip()
    naive = naive_text(text)
    stamps = pd.to_datetime(text.mask(naive), utc=True, errors="coerce", format="ISO8601")
    if naive.any():
        if zone is None:
            raise NaiveTimes(_naive_message(what, text[naive]))
        local = pd.to_datetime(text[naive], errors="coerce", format="ISO8601")
        stamps[naive] = local.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    return stamps


def naive_text(text: pd.Series) -> pd.Series:
    """Per value: a time of day with no offset (a naive local time)."""
    return (text.str.contains(_HAS_TIME, regex=True) & ~text.str.contains(_HAS_OFFSET, regex=True)).fillna(False)


def _naive_message(what: str, examples: pd.Series) -> str:
    sample = ", ".join(repr(str(v)) for v in examples.astype(str).unique()[:3])
    return (f"{what} has times without a time zone (e.g. {sample}); say which zone they were written in: "
            "sources.<side>.timezone in the spec (an IANA name such as UTC or Europe/Berlin), or --timezone for "
            "reconcile diff")  # fmt: skip
