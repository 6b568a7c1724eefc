from django.apps import AppConfig


class FlexiAIConfig(AppConfig):
    name = "flexiai_django"
    verbose_name = "FlexiAI"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from flexiai_django import broadcast, checks, history, metrics, registry  # noqa: F401

        checks.register()
        registry.connect()
        from django.db.models.signals import post_delete, post_save

        from flexiai_django.auth import forget_keys
        from flexiai_django.models import ApiKey

        post_save.connect(forget_keys, sender=ApiKey, dispatch_uid="flexiai-key-save")
        post_delete.connect(forget_keys, sender=ApiKey, dispatch_uid="flexiai-key-delete")
