"""Create the benchmark database named by BENCH_DB and put 20 items in it (run by run.py)."""

import os

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
    django.setup()
    from benchapp.models import Item
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, interactive=False, verbosity=0)
    Item.objects.all().delete()
    Item.objects.bulk_create(
        Item(
            name=f"item number {i}",
            price=i * 3.25,
            description=f"A plain description of item {i}, long enough to be truncated "
            "by the template filter so that it does a little work.",
        )
        for i in range(1, 21)
    )


if __name__ == "__main__":
    main()
