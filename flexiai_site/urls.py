from django.contrib import admin
from django.urls import include, path

from flexiai_site import views

urlpatterns = [
    path("", views.index, name="index"),
    path("chat/direct", views.chat_direct, name="chat-direct"),
    path("chat/decorator", views.chat_decorator, name="chat-decorator"),
    path("initiate_call", views.initiate_call, name="initiate-call"),
    path("chat_completions", views.chat_completions, name="chat-completions-demo"),
    path("admin/", admin.site.urls),
    path("", include("flexiai_django.urls")),
]
