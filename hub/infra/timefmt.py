from datetime import UTC, date, datetime


def iso_z(value: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and `Z`, as the contract shows timestamps."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def utc_day(value: datetime) -> date:
    """The UTC calendar day of a moment: what usage per key and day, and monthly caps, count by."""
    return value.astimezone(UTC).date()
