"""What people type into a numeric field or option that its column cannot hold, on the database
the tests run on (PostgreSQL's `integer` ends at 2**31 - 1, SQLite and `bigint` at 2**63 - 1)."""

from django.db import connection

# Not a number, below zero, one past the column's end, 2**63, 10**30: parametrize by these.
REFUSED = ["abc", "-1", "column max + 1", "2**63", "10**30"]


def column_max(model, field_name: str) -> int:
    return connection.ops.integer_field_range(model._meta.get_field(field_name).get_internal_type())[1]


def refused_input(kind: str, model, field_name: str) -> str:
    """The text of one REFUSED kind for `model.field_name`."""
    numbers = {"column max + 1": column_max(model, field_name) + 1, "2**63": 2**63, "10**30": 10**30}
    return str(numbers.get(kind, kind))


def assert_form_refused(response, field: str) -> None:
    """The page came back (200, not a 500 or a redirect) with an error on `field`."""
    assert response.status_code == 200, response.status_code
    context = response.context
    form = context["adminform"].form if "adminform" in context else context["form"]
    assert field in form.errors, form.errors
