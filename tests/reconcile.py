from django.core.management import call_command


def assert_reconciled():
    """`hub_reconcile` finds no drift between ledger, grants and generations (it raises
    CommandError, a non-zero exit for operators, on any)."""
    call_command("hub_reconcile")
