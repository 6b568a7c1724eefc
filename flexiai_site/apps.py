from django.apps import AppConfig


class FlexiAISiteConfig(AppConfig):
    name = "flexiai_site"
    verbose_name = "FlexiAI demo site"
