"""A limit of 0 used to mean "unlimited"; it is NULL now (0006: and a limit is never 0 again).

Backwards, NULL turns into 0 again, which the previous code reads as "unlimited".
"""

from django.db import migrations

MONEY_LIMITS = ("quota", "rate_limit_5h", "rate_limit_1d", "rate_limit_7d")


def zero_to_null(apps, schema_editor):
    ApiKey = apps.get_model("accounts", "ApiKey")
    for field in MONEY_LIMITS:
        ApiKey.objects.filter(**{field: 0}).update(**{field: None})


def null_to_zero(apps, schema_editor):
    ApiKey = apps.get_model("accounts", "ApiKey")
    for field in MONEY_LIMITS:
        ApiKey.objects.filter(**{f"{field}__isnull": True}).update(**{field: 0})


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_apikey_limits_and_pause"),
    ]

    operations = [
        migrations.RunPython(zero_to_null, null_to_zero, elidable=False),
    ]
