"""Artifacts get an expiry (BYTESPIKE_MEDIA_RETENTION_DAYS after creation) and live in the
"media" storage (a folder or a bucket). Existing artifacts expire that long after they were
made, as new ones will."""

from datetime import timedelta

from django.conf import settings
from django.db import migrations, models

import generation.storage


def set_expiry(apps, schema_editor):
    Artifact = apps.get_model("generation", "Artifact")
    retention = timedelta(days=settings.BYTESPIKE_MEDIA_RETENTION_DAYS)
    Artifact.objects.update(expires_at=models.F("created_at") + retention)


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0004_task_request_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="artifact",
            name="expires_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(set_expiry, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="artifact",
            name="expires_at",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="artifact",
            name="file",
            field=models.FileField(
                blank=True, storage=generation.storage.media_storage, upload_to="artifacts/%Y/%m/%d/"
            ),
        ),
        migrations.AddIndex(
            model_name="artifact",
            index=models.Index(
                condition=models.Q(("file", ""), _negated=True),
                fields=["expires_at"],
                name="artifact_kept",
            ),
        ),
    ]
