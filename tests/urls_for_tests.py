"""A view that lets NoProviderAvailable escape, as a careless user view would."""

from django.http import JsonResponse
from django.urls import include, path

import flexiai_django


def careless(request):
    return JsonResponse({"content": flexiai_django.chat("hi").content})


async def acareless(request):
    return JsonResponse({"content": (await flexiai_django.achat("hi")).content})


urlpatterns = [
    path("careless", careless),
    path("acareless", acareless),
    path("", include("flexiai_django.urls")),
]
