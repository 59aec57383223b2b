"""Key names are unique in an account among keys not deleted: existing duplicates are renamed
first (the oldest keeps its name, later ones get " (2)", " (3)", ...), then the constraint."""

from django.db import migrations, models

MAX_NAME = 100


def _free_name(name: str, taken: set[str]) -> str:
    number = 2
    while True:
        suffix = f" ({number})"
        candidate = name[: MAX_NAME - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        number += 1


def rename_duplicates(apps, schema_editor):
    ApiKey = apps.get_model("keys", "ApiKey")
    live = ApiKey.objects.filter(deleted_at__isnull=True)
    taken: dict[int, set[str]] = {}
    for account_id, name in live.values_list("account_id", "name"):
        taken.setdefault(account_id, set()).add(name)
    seen: dict[int, set[str]] = {}
    for key in live.order_by("account_id", "created_at", "id").only("id", "account_id", "name"):
        names = seen.setdefault(key.account_id, set())
        if key.name not in names:
            names.add(key.name)
            continue
        new_name = _free_name(key.name, taken[key.account_id])
        taken[key.account_id].add(new_name)
        names.add(new_name)
        ApiKey.objects.filter(pk=key.pk).update(name=new_name)


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0002_apikey_allowed_models"),
    ]

    operations = [
        migrations.RunPython(rename_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="apikey",
            constraint=models.UniqueConstraint(
                condition=models.Q(("deleted_at__isnull", True)),
                fields=("account", "name"),
                name="apikey_name_unique_in_account",
                violation_error_message="A key with this name already exists.",
            ),
        ),
    ]
