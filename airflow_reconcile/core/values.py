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
                return cls(relative=float(raw[:-1]) / 100)
            if raw[-1:] in DURATION_UNITS:
                return cls(seconds=duration_seconds(raw, fraction=True))
            return cls(absolute=float(raw))
        except ValueError:
            raise ValueError(
                f"{text!r} is not a tolerance; write 0.01 (absolute), 1% (relative) or 5m (duration)"
            ) from None
