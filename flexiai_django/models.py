"""Providers are database rows, edited in the admin; the chain reads immutable snapshots."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from flexiai_django import crypto
from flexiai_django.breakers import default_config
from flexiai_django.conf import get_settings
from flexiai_django.errors import ConfigurationError
from flexiai_django.providers.base import ProviderConfig, breaker_name_for, provider_of

#: Why a provider can't be used; shown in the admin, the status page and /health.
#: Fixed texts: they never carry key material or an environment variable's value.
KEY_UNDECRYPTABLE = "API key cannot be decrypted (SECRET_KEY changed?)"
ENV_NAME_REFUSED = "api_key_env does not match API_KEY_ENV_PATTERN"
KEY_ENDPOINT_CHANGED = "API key was entered for another endpoint (base URL or kind changed)"


def env_name_allowed(name: str) -> bool:
    """May a provider's key be read from the environment variable ``name``?

    Only names matching ``FLEXIAI["API_KEY_ENV_PATTERN"]`` (whole name): otherwise a user
    who may edit providers could send ``DJANGO_SECRET_KEY`` to a server of theirs.
    """
    try:
        return re.fullmatch(get_settings().API_KEY_ENV_PATTERN, name) is not None
    except (re.error, TypeError):
        return False


def _or(value: Any, default: Any) -> Any:
    """A row's own value, or the FLEXIAI default when left blank."""
    return default if value is None else value


class ProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OLLAMA = "ollama", "Ollama"
    OPENAI_COMPATIBLE = "openai_compatible", _("OpenAI-compatible server")


class Provider(models.Model):
    name = models.SlugField(max_length=64, unique=True,
                            help_text=_("Used in routing, metrics and URLs."))
    kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    base_url = models.URLField(
        max_length=500, blank=True,
        help_text=_("Blank: the provider's public endpoint (OpenAI, Anthropic, local Ollama)."),
    )
    model = models.CharField(max_length=200)
    api_key_env = models.CharField(
        _("API key environment variable"), max_length=200, blank=True,
        help_text=_("Read the key from this environment variable at call time. "
                    "Takes precedence over a stored key. Only names matching "
                    "FLEXIAI[\"API_KEY_ENV_PATTERN\"] (by default …_API_KEY)."),
    )
    api_key_encrypted = models.TextField(blank=True, editable=False)
    api_key_endpoint = models.CharField(
        max_length=600, blank=True, editable=False,
        help_text=_("The kind and base URL the stored key was entered for; it is only ever "
                    "sent there."),
    )
    priority = models.PositiveIntegerField(
        default=100, help_text=_("Lower goes first."))
    weight = models.PositiveIntegerField(
        default=1, help_text=_("Share of traffic among providers of the same priority."))
    enabled = models.BooleanField(default=True)
    timeout = models.FloatField(default=30.0, validators=[MinValueValidator(0.1)],
                                help_text=_("Seconds before an attempt counts as failed."))
    failure_threshold = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text=_("Consecutive failures that open the breaker. Blank: FLEXIAI default."))
    success_threshold = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)])
    open_seconds = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0)])
    max_open_seconds = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0)])
    half_open_max_calls = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)])
    max_retries = models.PositiveIntegerField(
        null=True, blank=True,
        help_text=_("Retries of a 429, 5xx or reset on this provider before the next one. "
                    "Blank: FLEXIAI default."))
    first_token_timeout = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1)],
        help_text=_("Seconds a stream may take to its first token. Blank: FLEXIAI default."))
    stall_timeout = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1)],
        help_text=_("Seconds a stream may stay silent between chunks. "
                    "Blank: FLEXIAI default."))
    context_window = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text=_("Tokens the model accepts (prompt and answer). Longer requests go to a "
                    "provider with a larger window. Blank: unknown."))
    tier = models.CharField(
        max_length=32, blank=True, default="",
        help_text=_("A label such as large or small: the overflow strategy fills tiers in "
                    "FLEXIAI[\"OVERFLOW_TIERS\"] order and the capacity planner plans per "
                    "tier. Blank: no tier."))
    capacity = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text=_("Concurrent requests this provider takes across the whole deployment. "
                    "Blank: unlimited."))
    warming = models.BooleanField(
        default=False,
        help_text=_("Being loaded (a cold model): no traffic, or only "
                    "FLEXIAI[\"WARMING_TRICKLE\"], until a warm-up probe answers; the probe "
                    "then clears this."))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    #: Set by save(): the stored key was removed because the endpoint changed.
    key_dropped = False
    #: The ciphertext set_api_key() produced, until saved: a key typed for this save.
    #: (A value, not a flag: after refresh_from_db() it no longer matches.)
    _entered: str | None = None

    class Meta:
        ordering = ("priority", "name")

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Drop the stored key when the kind or base URL changed and no key was entered.

        Otherwise whoever may edit a provider could point it at their own server and
        receive the key. Each stored key records the endpoint it was entered for, so this
        holds on every path that saves a row (admin, shell, API). After a drop,
        ``key_dropped`` is True (the admin says so).
        """
        self.key_dropped = False
        touched: set[str] = set()
        entered = self._entered is not None and self._entered == self.api_key_encrypted
        if entered or (self._state.adding and not self.api_key_endpoint):
            self.api_key_endpoint = self.endpoint if self.api_key_encrypted else ""
            touched = {"api_key_encrypted", "api_key_endpoint"}
        elif self.api_key_encrypted and self.api_key_endpoint != self.endpoint:
            self.api_key_encrypted = self.api_key_endpoint = ""
            self.key_dropped = True
            touched = {"api_key_encrypted", "api_key_endpoint"}
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and touched:
            kwargs["update_fields"] = {*update_fields, *touched}
        super().save(*args, **kwargs)
        self._entered = None

    @property
    def endpoint(self) -> str:
        """Where this row's key goes: its kind and base URL (trailing ``/`` ignored)."""
        return f"{self.kind} {self.base_url.rstrip('/')}"

    def set_api_key(self, plaintext: str | None) -> None:
        """Store a key encrypted, for this row's endpoint; ``None`` or ``""`` removes it.

        The key counts as entered for whatever kind and base URL the row has when it is
        next saved.
        """
        self.api_key_encrypted = crypto.encrypt(plaintext) if plaintext else ""
        self.api_key_endpoint = self.endpoint if plaintext else ""
        self._entered = self.api_key_encrypted

    def clean(self) -> None:
        super().clean()
        if self.api_key_env and not env_name_allowed(self.api_key_env):
            pattern = get_settings().API_KEY_ENV_PATTERN
            raise ValidationError({"api_key_env": ValidationError(
                _("Only variables holding an API key may be named here: the name must "
                  "match API_KEY_ENV_PATTERN %(pattern)s (for example OPENAI_API_KEY)."),
                code="api_key_env_refused", params={"pattern": pattern})})

    @property
    def has_api_key(self) -> bool:
        if self.api_key_env:
            return env_name_allowed(self.api_key_env) and bool(os.environ.get(self.api_key_env))
        return bool(self.api_key_encrypted)

    def resolve_api_key(self) -> str:
        """The key to send, or ConfigurationError with a reason that is safe to show.

        A refused environment name is never read; a stored key is only given out for the
        endpoint it was entered for (a row moved by ``QuerySet.update()`` or raw SQL).
        """
        if self.api_key_env:
            if not env_name_allowed(self.api_key_env):
                raise ConfigurationError(ENV_NAME_REFUSED)
            return os.environ.get(self.api_key_env, "")
        if not self.api_key_encrypted:
            return ""
        if self.api_key_endpoint != self.endpoint:
            raise ConfigurationError(KEY_ENDPOINT_CHANGED)
        try:
            return crypto.decrypt(self.api_key_encrypted)
        except ConfigurationError:
            raise ConfigurationError(KEY_UNDECRYPTABLE) from None

    def misconfiguration(self) -> str | None:
        """Why this row can't be used as configured, or None. Never key material."""
        try:
            self.resolve_api_key()
        except ConfigurationError as exc:
            return str(exc)
        return None

    @property
    def breaker_name(self) -> str:
        return breaker_name_for(self.name)

    def breaker_overrides(self) -> dict[str, Any]:
        return {
            "failure_threshold": self.failure_threshold,
            "success_threshold": self.success_threshold,
            "open_seconds": self.open_seconds,
            "max_open_seconds": self.max_open_seconds,
            "half_open_max_calls": self.half_open_max_calls,
        }

    def to_config(self) -> ProviderConfig:
        settings = get_settings()
        return ProviderConfig(
            name=self.name,
            kind=self.kind,
            base_url=self.base_url,
            model=self.model,
            api_key=self.resolve_api_key(),
            priority=self.priority,
            weight=self.weight,
            timeout=self.timeout,
            breaker=default_config(**self.breaker_overrides()),
            max_retries=_or(self.max_retries, settings.MAX_RETRIES),
            first_token_timeout=_or(self.first_token_timeout, settings.FIRST_TOKEN_TIMEOUT),
            stall_timeout=_or(self.stall_timeout, settings.STALL_TIMEOUT),
            context_window=self.context_window,
            tier=self.tier,
            capacity=self.capacity,
            warming=self.warming,
        )


class Scope(models.TextChoices):
    CHAT = "chat", _("chat: the OpenAI-compatible API and reads")
    ADMIN = "admin", _("admin: management calls (breaker reset)")


def hash_token(token: str) -> str:
    """Tokens are 256-bit random: a plain SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiKey(models.Model):
    """A client's key for the HTTP API. Only a hash is stored; the token is shown once."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.CharField(max_length=100, default=Scope.CHAT,
                              help_text=_("Comma-separated: chat, admin."))
    rate_limit_per_minute = models.PositiveIntegerField(
        default=60, help_text=_("Requests per minute across all workers; 0 for no limit."))
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("API key")
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} (fxa-{self.prefix}-…)"

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(s.strip() for s in self.scopes.split(",") if s.strip())

    def issue(self) -> str:
        """Give this key a new token; returns it (the only time it is visible)."""
        self.prefix = secrets.token_hex(6)
        token = f"fxa-{self.prefix}-{secrets.token_urlsafe(32)}"
        self.key_hash = hash_token(token)
        return token

    def matches(self, token: str) -> bool:
        return secrets.compare_digest(self.key_hash, hash_token(token))


class BreakerTransition(models.Model):
    """One breaker state change, kept so an outage can be reviewed after the fact.

    Written once, by the worker whose call made the change; bounded by
    ``FLEXIAI["HISTORY_LIMIT"]`` (see :mod:`flexiai_django.history`).
    """

    breaker = models.CharField(max_length=200, db_index=True)
    from_state = models.CharField(max_length=16)
    to_state = models.CharField(max_length=16)
    at = models.DateTimeField(db_index=True)
    worker = models.CharField(max_length=200, blank=True)
    failures = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=200, blank=True,
                             help_text=_("The error kind that tripped it (never a message)."))

    class Meta:
        verbose_name = _("breaker transition")
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.breaker}: {self.from_state} → {self.to_state}"

    @property
    def provider(self) -> str | None:
        return provider_of(self.breaker)


class Status(Provider):
    """The live status page's place in the admin (a proxy: no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = _("live status")
        verbose_name_plural = _("live status")
