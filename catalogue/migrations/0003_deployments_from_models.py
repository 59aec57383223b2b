"""Each model's one channel becomes its first deployment."""

from django.db import migrations


def forwards(apps, schema_editor):
    AIModel = apps.get_model("catalogue", "AIModel")
    Deployment = apps.get_model("catalogue", "Deployment")
    Deployment.objects.bulk_create(
        Deployment(model_id=m.pk, channel_id=m.channel_id, upstream_model=m.upstream_model)
        for m in AIModel.objects.all()
    )


def backwards(apps, schema_editor):
    AIModel = apps.get_model("catalogue", "AIModel")
    Deployment = apps.get_model("catalogue", "Deployment")
    for model in AIModel.objects.all():
        first = Deployment.objects.filter(model_id=model.pk).order_by("-priority", "id").first()
        if first is not None:
            model.channel_id, model.upstream_model = first.channel_id, first.upstream_model
            model.save(update_fields=["channel", "upstream_model"])


class Migration(migrations.Migration):
    dependencies = [("catalogue", "0002_deployments")]

    operations = [migrations.RunPython(forwards, backwards)]
