"""Circuit breakers for any outbound call: ``breaker("name").call(fn)`` or as a decorator.

The store is built lazily from ``FLEXIAI["BREAKER_STORE"]`` (BACKEND dotted path +
OPTIONS) the first time it is needed in this process, and rebuilt after a settings
change or a fork.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

from django.dispatch import receiver
from django.utils.module_loading import import_string

from flexiai_django import metrics, signals
from flexiai_django.conf import get_settings
from flexiai_django.errors import CircuitOpen
from flexiai_django.process_local import PerProcess

from .state import Admission, BreakerConfig, BreakerState, State
from .store import BreakerStore

__all__ = [
    "Breaker",
    "BreakerConfig",
    "BreakerState",
    "BreakerStore",
    "State",
    "breaker",
    "default_config",
    "get_store",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

def _build_store() -> BreakerStore:
    spec = get_settings().BREAKER_STORE
    backend = import_string(spec["BACKEND"])
    store: BreakerStore = backend(**spec.get("OPTIONS", {}))
    return store


def _announce(store: BreakerStore) -> None:
    signals.store_ready.send(sender=type(store), store=store)


_store = PerProcess(_build_store, on_built=_announce)


def get_store() -> BreakerStore:
    """This process's breaker store (rebuilt in a forked child: never share a client)."""
    return _store.get()


@receiver(signals.settings_reloaded)
def _drop_store(**kwargs: Any) -> None:
    _store.reset()
    _config.cache_clear()


#: The breaker store's Redis options that other shared counters reuse.
_REDIS_OPTIONS = ("alias", "url", "key_prefix", "socket_timeout", "connect_timeout",
                  "retry_seconds")


def shared_redis_options() -> dict[str, Any] | None:
    """The Redis options of the breaker store when it is shared, else None: counters that
    keep deployment-wide state (hedge budget, in-flight slots) live beside the breakers."""
    if not get_store().describe()["shared"]:
        return None
    options = get_settings().BREAKER_STORE.get("OPTIONS", {})
    return {k: options[k] for k in _REDIS_OPTIONS if k in options}


def beside_breakers(factory: Callable[..., T]) -> PerProcess[T]:
    """One ``factory(shared=..., **redis options)`` per process: on the breaker store's
    Redis when that store is shared, counting in-process otherwise."""

    def build() -> T:
        options = shared_redis_options()
        return factory(shared=options is not None, **(options or {}))

    return PerProcess(build)


def default_config(**overrides: Any) -> BreakerConfig:
    """Breaker settings from FLEXIAI, with per-breaker overrides (``None`` means default)."""
    return _config(tuple(sorted(overrides.items())))


@functools.cache
def _config(overrides_items: tuple[tuple[str, Any], ...]) -> BreakerConfig:
    overrides = dict(overrides_items)
    s = get_settings()
    values: dict[str, Any] = {
        "failure_threshold": s.FAILURE_THRESHOLD,
        "success_threshold": s.SUCCESS_THRESHOLD,
        "open_seconds": s.OPEN_SECONDS,
        "max_open_seconds": s.MAX_OPEN_SECONDS,
        "jitter": s.OPEN_JITTER,
        "half_open_max_calls": s.HALF_OPEN_MAX_CALLS,
        "probe_ttl": s.PROBE_TTL_SECONDS,
    }
    unknown = set(overrides) - set(values)
    if unknown:
        raise TypeError(f"unknown breaker option(s): {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return BreakerConfig(**values)


def _default_is_failure(exc: BaseException) -> bool | None:
    """Failure, or ``None`` for "no verdict" (cancellation, and errors that blame the caller)."""
    if not isinstance(exc, Exception):
        return None
    return True if getattr(exc, "trips_breaker", True) else None


class Breaker:
    """A named breaker. Cheap to create: state lives in the store, not here.

    Args:
        name: the breaker's name, shared by every worker (provider breakers are
            ``llm:<provider>``; pick any other name for your own calls).
        is_failure: decides what an exception means: ``True`` a failure (counts toward
            opening), ``False`` a success, ``None`` no verdict (not recorded). By default
            every ``Exception`` is a failure except those whose ``trips_breaker`` is false
            (errors that blame the caller), and cancellation has no verdict.
        store: a store to use instead of the configured ``BREAKER_STORE``.
        **config: overrides of the FLEXIAI breaker defaults: ``failure_threshold``,
            ``success_threshold``, ``open_seconds``, ``max_open_seconds``, ``jitter``,
            ``half_open_max_calls``, ``probe_ttl``; any other name raises ``TypeError``.
    """

    def __init__(
        self,
        name: str,
        *,
        is_failure: Callable[[BaseException], bool | None] = _default_is_failure,
        store: BreakerStore | None = None,
        **config: Any,
    ) -> None:
        self.name = name
        self._is_failure = is_failure
        self._store = store
        self._config_overrides = config

    @property
    def store(self) -> BreakerStore:
        return self._store or get_store()

    @property
    def config(self) -> BreakerConfig:
        return default_config(**self._config_overrides)

    @property
    def state(self) -> BreakerState:
        """The shared state now (a store read: not for the hot path)."""
        return self.store.get(self.name)

    def _rejected(self, admission: Admission) -> CircuitOpen:
        metrics.rejected(self.name)
        return CircuitOpen(self.name, admission.refusal, admission.retry_after)

    def _success_of(self, exc: BaseException) -> tuple[bool | None, str]:
        """What the store records for ``exc`` (``success=`` and the error kind).

        The user's ``is_failure`` hook speaks of failures; the store of successes.
        """
        failed = self._is_failure(exc)
        kind = getattr(exc, "kind", None) or type(exc).__name__
        return (None if failed is None else not failed), str(kind)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)`` if the breaker admits it; its outcome is recorded.

        Raises:
            CircuitOpen: the breaker refused the call without running it (it has a
                ``retry_after`` in seconds when one is known).
        """
        store, config = self.store, self.config
        admission = store.acquire(self.name, config)
        if not admission.allowed:
            raise self._rejected(admission)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if admission.recorded:
                success, kind = self._success_of(exc)
                store.record(self.name, config, success=success, probe=admission.probe, error=kind)
            raise
        if admission.recorded:
            store.record(self.name, config, success=True, probe=admission.probe)
        return result

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """:meth:`call` for a coroutine function; the store is asked without blocking
        the event loop. Raises :class:`CircuitOpen` like :meth:`call`."""
        store, config = self.store, self.config
        admission = await store.aacquire(self.name, config)
        if not admission.allowed:
            raise self._rejected(admission)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            if admission.recorded:
                success, kind = self._success_of(exc)
                await store.arecord(
                    self.name, config, success=success, probe=admission.probe, error=kind
                )
            raise
        if admission.recorded:
            await store.arecord(self.name, config, success=True, probe=admission.probe)
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Use as a decorator on a sync or async function."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.acall(fn, *args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return self.call(fn, *args, **kwargs)

        return wrapper

    def reset(self) -> BreakerState:
        """Close the breaker for the whole deployment (an admin action)."""
        return self.store.force(self.name, State.CLOSED)

    def force_open(self) -> BreakerState:
        """Refuse every call until :meth:`reset`, deployment-wide."""
        return self.store.force(self.name, State.FORCED_OPEN)

    def disable(self) -> BreakerState:
        """Admit every call and record nothing until :meth:`reset`, deployment-wide."""
        return self.store.force(self.name, State.DISABLED)

    def __repr__(self) -> str:
        return f"<Breaker {self.name!r}>"


def breaker(name: str, **options: Any) -> Breaker:
    """The breaker called ``name``; options override FLEXIAI defaults (see :class:`Breaker`)."""
    return Breaker(name, **options)
