"""Numbers people type — in a form, as a command's option — held to the range of the column
they are stored in, on the database in use (PostgreSQL's `integer` ends at 2147483647; SQLite
stores 64 bits). A number past it is a form error or a one-line command error; unchecked, the
driver's OverflowError (or PostgreSQL's "out of range") was a 500 or a traceback."""

import argparse

from django import forms
from django.db import connection


def column_range(model, field_name: str) -> tuple[int, int]:
    """The smallest and largest value the field's column holds here."""
    return connection.ops.integer_field_range(model._meta.get_field(field_name).get_internal_type())


def integer_form_field(model, field_name: str, *, min_value: int, **kwargs) -> forms.IntegerField:
    """A form's whole-number field for `model.field_name`: from `min_value` to the column's end."""
    low, high = column_range(model, field_name)
    return forms.IntegerField(min_value=max(low, min_value), max_value=high, **kwargs)


def whole_number_option(low: int, high: int, *, none: bool = False):
    """An argparse `type=`: a whole number from `low` to `high` (or None for 'none', with
    `none`). A refusal is argparse's own one-line error: usage and the message, exit status 2
    on the command line; a CommandError through call_command (CommandParser.error). Raised from
    the type function, a CommandError would escape the parser as a traceback."""
    expected = f"a whole number from {low} to {high}" + (", or none" if none else "")

    def parse(text: str) -> int | None:
        if none and text.strip().lower() == "none":
            return None
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not {expected}")
        return value

    return parse


def column_option(model, field_name: str, *, min_value: int, none: bool = False):
    """whole_number_option from `min_value` to the end of `model.field_name`'s column."""
    low, high = column_range(model, field_name)
    return whole_number_option(max(low, min_value), high, none=none)
