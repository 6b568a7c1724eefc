from django.apps import AppConfig


class FlexiAIConfig(AppConfig):
    name = "flexiai_django"
    verbose_name = "FlexiAI"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from flexiai_django import broadcast, checks, registry  # noqa: F401

        checks.register()
        registry.connect()
