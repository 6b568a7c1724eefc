"""Signals other parts of the app (and users) can listen to."""

from django.dispatch import Signal

#: Sent after the FLEXIAI settings were reloaded; cached clients and stores drop themselves.
settings_reloaded = Signal()

#: Sent after a breaker changed state: ``name``, ``snapshot``.
breaker_transition = Signal()

#: Sent after a provider row was saved or deleted in this process.
providers_changed = Signal()

#: Sent when this process builds its breaker store (first use, after a fork or a settings
#: change): the broadcast listener starts then, so the store needn't know about it.
store_ready = Signal()
