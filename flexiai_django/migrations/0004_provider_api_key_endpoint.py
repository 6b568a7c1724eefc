"""Each stored provider key records the endpoint it was entered for; env names follow a pattern.

Keys stored before this migration are taken to belong to the row's current kind and
base URL (the best that can be known), so they keep working.
"""

from typing import Any

from django.db import migrations, models


def bind_existing_keys(apps: Any, schema_editor: Any) -> None:
    provider = apps.get_model("flexiai_django", "Provider")
    for row in provider.objects.exclude(api_key_encrypted="").only("kind", "base_url"):
        row.api_key_endpoint = f"{row.kind} {row.base_url.rstrip('/')}"
        row.save(update_fields=["api_key_endpoint"])


class Migration(migrations.Migration):

    dependencies = [
        ("flexiai_django", "0003_transitions_and_status"),
    ]

    operations = [
        migrations.AddField(
            model_name="provider",
            name="api_key_endpoint",
            field=models.CharField(
                blank=True, editable=False, max_length=600,
                help_text="The kind and base URL the stored key was entered for; it is only "
                          "ever sent there.",
            ),
        ),
        migrations.RunPython(bind_existing_keys, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="provider",
            name="api_key_env",
            field=models.CharField(
                blank=True, max_length=200, verbose_name="API key environment variable",
                help_text="Read the key from this environment variable at call time. Takes "
                          "precedence over a stored key. Only names matching "
                          'FLEXIAI["API_KEY_ENV_PATTERN"] (by default …_API_KEY).',
            ),
        ),
    ]
