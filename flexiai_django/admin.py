"""Providers in the Django admin: write-only API keys, live breaker state, breaker actions."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import BreakerState, State
from flexiai_django.models import (
    ENV_NAME_REFUSED,
    KEY_ENDPOINT_CHANGED,
    KEY_UNDECRYPTABLE,
    ApiKey,
    BreakerTransition,
    Provider,
    Scope,
    Status,
)
from flexiai_django.routing import STATUS_SOCKET_PATH

STATE_COLOURS = {
    State.CLOSED: "#1a7f37",
    State.HALF_OPEN: "#9a6700",
    State.OPEN: "#cf222e",
    State.FORCED_OPEN: "#8250df",
    State.DISABLED: "#57606a",
}


def _formfield(field: models.Field, **kwargs: Any) -> forms.Field | None:  # type: ignore[type-arg]
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class ProviderForm(forms.ModelForm):  # type: ignore[type-arg]
    api_key = forms.CharField(
        label=_("API key"), required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Write-only: stored encrypted, never shown again. Leave blank to keep "
                    "the current key. Changing the kind or base URL removes the stored key "
                    "unless you enter it again here."),
    )
    clear_api_key = forms.BooleanField(label=_("Remove the stored key"), required=False)

    class Meta:
        model = Provider
        formfield_callback = _formfield
        fields = ("name", "kind", "base_url", "model", "enabled", "api_key_env", "priority",
                  "weight", "timeout", "failure_threshold", "success_threshold", "open_seconds",
                  "max_open_seconds", "half_open_max_calls", "context_window", "max_retries",
                  "first_token_timeout", "stall_timeout", "tier", "capacity", "warming")

    def save(self, commit: bool = True) -> Provider:
        provider: Provider = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            provider.set_api_key(None)
        elif self.cleaned_data.get("api_key"):
            provider.set_api_key(self.cleaned_data["api_key"])
        if commit:
            provider.save()
        return provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = ProviderForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("name", "kind", "model", "priority", "weight", "enabled", "key_status",
                    "breaker_state", "breaker_failures")
    list_editable = ("priority", "weight", "enabled")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "model", "base_url")
    readonly_fields = ("key_status", "breaker_state", "created_at", "updated_at")
    actions = ("reset_breakers", "force_open_breakers", "disable_breakers")
    fieldsets = (
        (None, {"fields": ("name", "kind", "base_url", "model", "enabled")}),
        (_("Credentials"), {"fields": ("api_key_env", "api_key", "clear_api_key", "key_status")}),
        (_("Routing"), {"fields": ("priority", "weight", "timeout", "context_window", "tier",
                                   "capacity", "warming")}),
        (_("Healing"), {"fields": ("max_retries", "first_token_timeout", "stall_timeout")}),
        (_("Circuit breaker (blank: FLEXIAI defaults)"), {
            "fields": ("breaker_state", "failure_threshold", "success_threshold", "open_seconds",
                       "max_open_seconds", "half_open_max_calls"),
            "classes": ("collapse",),
        }),
        (None, {"fields": ("created_at", "updated_at")}),
    )

    def _state(self, obj: Provider) -> BreakerState:
        return get_store().get(obj.breaker_name)

    def save_model(self, request: HttpRequest, obj: Provider, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.key_dropped:
            self.message_user(request, _(
                "%(name)s: the stored key was removed because the endpoint (kind or base URL) "
                "changed; enter it again.") % {"name": obj.name}, messages.WARNING)

    @admin.display(description=_("API key"))
    def key_status(self, obj: Provider) -> str:
        """Where the key comes from, and (in red) why it can't be used; never the key."""
        problem = obj.misconfiguration()
        if obj.api_key_env:
            text = f"from ${obj.api_key_env}"
            if problem == ENV_NAME_REFUSED:
                return _problem(text, _("refused: the name does not match API_KEY_ENV_PATTERN"))
            return text + ("" if obj.has_api_key else " (not set)")
        if problem == KEY_UNDECRYPTABLE:
            return _problem(_("stored"), _("cannot be decrypted (SECRET_KEY changed?)"))
        if problem == KEY_ENDPOINT_CHANGED:
            return _problem(_("stored"), _("entered for another endpoint: enter it again"))
        return "stored (encrypted)" if obj.api_key_encrypted else "none"

    @admin.display(description=_("Breaker"))
    def breaker_state(self, obj: Provider) -> str:
        state = self._state(obj).state
        return format_html('<strong style="color:{}">{}</strong>', STATE_COLOURS[state],
                           state.value.replace("_", " ").upper())

    @admin.display(description=_("Failures"))
    def breaker_failures(self, obj: Provider) -> int:
        return self._state(obj).failures

    def _force(self, request: HttpRequest, queryset: QuerySet[Provider], to: State,
               verb: str) -> None:
        store = get_store()
        names = []
        for provider in queryset:
            store.force(provider.breaker_name, to)
            names.append(provider.name)
        self.message_user(request, f"{verb}: {', '.join(names)}", messages.SUCCESS)

    @admin.action(description=_("Reset breaker (closed)"), permissions=["change"])
    def reset_breakers(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        self._force(request, queryset, State.CLOSED, "Breaker reset")

    @admin.action(description=_("Force breaker open"), permissions=["change"])
    def force_open_breakers(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        self._force(request, queryset, State.FORCED_OPEN, "Breaker forced open")

    @admin.action(description=_("Disable breaker (always allow)"), permissions=["change"])
    def disable_breakers(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        self._force(request, queryset, State.DISABLED, "Breaker disabled")


class ApiKeyForm(forms.ModelForm):  # type: ignore[type-arg]
    scopes = forms.MultipleChoiceField(choices=Scope.choices, initial=[Scope.CHAT],
                                       widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "rate_limit_per_minute", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["scopes"] = sorted(self.instance.scope_set)

    def clean_scopes(self) -> str:
        return ",".join(self.cleaned_data["scopes"])


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The token is shown once, on the page after saving: it is never stored or logged."""

    form = ApiKeyForm
    list_display = ("name", "masked", "scopes", "rate_limit_per_minute", "enabled", "created_at")
    list_filter = ("enabled",)
    search_fields = ("name", "prefix")
    actions = ("rotate",)

    @admin.display(description=_("Key"))
    def masked(self, obj: ApiKey) -> str:
        return f"fxa-{obj.prefix}-…"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            request._flexiai_token = obj.issue()  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: ApiKey,
                     post_url_continue: str | None = None) -> HttpResponse:
        token = getattr(request, "_flexiai_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        return self._show_once(request, [(obj, token)])

    @admin.action(description=_("Rotate: issue new tokens (old ones stop working)"),
                  permissions=["change"])
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse:
        issued = []
        for key in queryset:
            token = key.issue()
            key.save()
            issued.append((key, token))
        return self._show_once(request, issued)

    def _show_once(self, request: HttpRequest, issued: list[tuple[ApiKey, str]]) -> HttpResponse:
        context = {**self.admin_site.each_context(request), "issued": issued,
                   "opts": self.model._meta, "title": _("Copy the new key now")}
        response = TemplateResponse(request, "flexiai_django/api_key_issued.html", context)
        response["Cache-Control"] = "no-store"
        return response


@admin.register(BreakerTransition)
class BreakerTransitionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only: the history is written by the workers, never edited or deleted here.

    (Pruning is ``HISTORY_LIMIT``'s job; deleting rows would hide an outage.)
    """

    list_display = ("at", "breaker", "from_state", "to_state", "failures", "error", "worker")
    list_filter = ("to_state", "breaker")
    search_fields = ("breaker", "worker", "error")
    date_hierarchy = "at"
    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Status)
class StatusAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The live status page, at ``admin/flexiai_django/status/``: every breaker, updated live."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        opts = Provider._meta
        return request.user.is_staff and (
            request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}")
            or request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}"))

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.status_view)
        return [path("", view, name="flexiai_django_status"),
                path("", view, name="flexiai_django_status_changelist")]  # the index links here

    def status_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Live breaker status"),
            "socket_path": "/" + STATUS_SOCKET_PATH,
            "may_change": request.user.has_perm("flexiai_django.change_provider"),
            "script": _status_script(),
            "colours": {state.value: colour for state, colour in STATE_COLOURS.items()},
        }
        return TemplateResponse(request, "flexiai_django/status.html", context)


def _problem(source: Any, reason: Any) -> str:
    return format_html('{} <strong class="flexiai-key-problem" style="color:#cf222e">{}</strong>',
                       source, reason)


@cache
def _status_script() -> str:
    """Inlined, so the page works whether or not static files are served (gunicorn demo)."""
    return (Path(__file__).parent / "static" / "flexiai_django" / "status.js").read_text()
