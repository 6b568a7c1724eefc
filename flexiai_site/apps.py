from django.apps import AppConfig


class FlexAISiteConfig(AppConfig):
    name = "flexiai_site"
    verbose_name = "FlexAI demo site"
