"""Seeds worker settings with the Helm chart's defaults: the collector is off."""

from django.db import migrations

DEFAULTS = {"collector": False, "background": True}


def seed(apps, schema_editor):
    WorkerSettings = apps.get_model("queueing", "WorkerSettings")
    for worker_type, enabled in DEFAULTS.items():
        WorkerSettings.objects.get_or_create(worker_type=worker_type, defaults={"enabled": enabled})


class Migration(migrations.Migration):
    dependencies = [("queueing", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
