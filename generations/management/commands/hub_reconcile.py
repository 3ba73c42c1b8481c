from django.core.management.base import BaseCommand, CommandError

from generations.reconcile import reconcile


class Command(BaseCommand):
    help = "Check every credit invariant; print each problem and exit non-zero on drift."

    def handle(self, *args, **options):
        problems = reconcile()
        for problem in problems:
            self.stdout.write(problem)
        if problems:
            raise CommandError(f"{len(problems)} problem(s) found")
        self.stdout.write("OK: balances match the ledger; every charge is finished or in flight")
