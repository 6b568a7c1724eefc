"""HTTP views of the app; see ``flexiai_django.urls``."""
