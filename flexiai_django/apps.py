import logging

from django.apps import AppConfig

from flexiai_django import process_role

logger = logging.getLogger("flexiai_django")


class FlexiAIConfig(AppConfig):
    name = "flexiai_django"
    verbose_name = "FlexiAI"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from flexiai_django import (  # noqa: F401
            active_probes,
            broadcast,
            checks,
            history,
            metrics,
            provider_cache,
            warmup,
        )

        checks.register()
        provider_cache.connect()
        from django.db.models.signals import post_delete, post_save

        from flexiai_django.auth import forget_keys
        from flexiai_django.models import ApiKey

        post_save.connect(forget_keys, sender=ApiKey, dispatch_uid="flexiai-key-save")
        post_delete.connect(forget_keys, sender=ApiKey, dispatch_uid="flexiai-key-delete")
        command = process_role.management_command()
        process_role.remember_command(command)  # a one-off command only publishes
        if command is None:
            warn_at_start()
            # A wrong Redis password or CA never heals: refuse to start, clearly. (Commands
            # such as collectstatic run without Redis; `check --deploy` reports it.)
            from flexiai_django.redis_credentials import refuse_to_start_on_bad_credentials

            refuse_to_start_on_bad_credentials()


def warn_at_start() -> None:
    """Log the security checks that system checks would show, for servers that skip them.

    Django runs system checks only in management commands; gunicorn, uvicorn and daphne
    import the application without them, so a production server with anonymous loopback
    on would start silently. One line per message, once per process start.
    """
    from flexiai_django.checks import check_anonymous

    for message in check_anonymous():
        if not message.is_silenced():
            logger.warning("%s: %s HINT: %s", message.id, message.msg, message.hint)


def _inside_management_command() -> bool:
    """True while ``manage.py``/``django-admin`` sets Django up (they run the checks).

    Looks for ``ManagementUtility.execute`` on the call stack, which is how every command
    line reaches ``django.setup()``: manage.py, django-admin, ``python -m django`` and
    wrapper scripts alike, where ``sys.argv[0]`` would know only the first two names. Not
    importable yet means not inside it. A miss only costs a duplicate line.
    """
    return process_role.management_command() is not None
