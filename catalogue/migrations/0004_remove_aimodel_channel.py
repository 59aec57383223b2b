from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("catalogue", "0003_deployments_from_models")]

    operations = [
        migrations.RemoveField(model_name="aimodel", name="channel"),
        migrations.RemoveField(model_name="aimodel", name="upstream_model"),
    ]
