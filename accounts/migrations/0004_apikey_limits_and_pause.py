"""Key limits and pausing: rpm, tpm and max_concurrent; quota and the rolling caps become
nullable (NULL = no limit, filled in by 0005); a key's status may be "paused".

Backwards, a paused key is revoked: the previous code has no pause, and a key its owner stopped
must not start working again.
"""

from django.db import migrations, models
from django.utils import timezone


def revoke_paused(apps, schema_editor):
    ApiKey = apps.get_model("accounts", "ApiKey")
    ApiKey.objects.filter(status="paused").update(status="revoked", revoked_at=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_webhook_previous_secret"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="apikey", name="apikey_status_valid"),
        migrations.RemoveConstraint(model_name="apikey", name="apikey_limits_not_negative"),
        migrations.AddField(
            model_name="apikey",
            name="rpm",
            field=models.PositiveIntegerField(
                blank=True, null=True, verbose_name="requests per minute"
            ),
        ),
        migrations.AddField(
            model_name="apikey",
            name="tpm",
            field=models.PositiveBigIntegerField(
                blank=True, null=True, verbose_name="tokens per minute"
            ),
        ),
        migrations.AddField(
            model_name="apikey",
            name="max_concurrent",
            field=models.PositiveIntegerField(blank=True, null=True, verbose_name="calls at once"),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="quota",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="rate_limit_5h",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="rate_limit_1d",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="rate_limit_7d",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="status",
            field=models.CharField(
                choices=[("active", "Active"), ("paused", "Paused"), ("revoked", "Revoked")],
                default="active",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="managementkey",
            name="status",
            field=models.CharField(
                choices=[("active", "Active"), ("paused", "Paused"), ("revoked", "Revoked")],
                default="active",
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="apikey",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["active", "paused", "revoked"])),
                name="apikey_status_valid",
            ),
        ),
        # Last, so that backwards it runs first, while "paused" is still allowed.
        migrations.RunPython(migrations.RunPython.noop, revoke_paused, elidable=False),
    ]
