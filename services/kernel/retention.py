"""How long live state stays in Redis (ARCHITECTURE.md, read path: Redis holds live state,
Kafka the history). A prescription can be dispensed until the end of the last day of its
window (Vietnam time) and a sale reversed for REVERSAL_WINDOW after it; its keys expire a
retention after that. Pure: the services pass the retention (EPRX_RETENTION_DAYS)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from services.kernel.calendar import VIETNAM

REVERSAL_WINDOW = timedelta(hours=24)     # a sale can be reversed this long after it (DOMAIN.md section 4)
DEFAULT_RETENTION = timedelta(days=7)     # EPRX_RETENTION_DAYS's default
# Longer than any dispensing window (DOMAIN.md section 3): how long state is kept for a
# prescription whose window is not known (a ledger closed before its issue arrived, a copy
# without valid_until).
LONGEST_WINDOW = timedelta(days=90)


def window_end(valid_until: date) -> datetime:
    """The end of the window's last day in Vietnam: the next day's midnight there."""
    return datetime.combine(valid_until + timedelta(days=1), time(0), VIETNAM)


def live_until(valid_until: date, retention: timedelta) -> datetime:
    """When a prescription's state may go, seen from a service that does not follow its sales:
    a sale made at the window's last moment can still be reversed for REVERSAL_WINDOW."""
    return window_end(valid_until) + REVERSAL_WINDOW + retention


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
