"""The capacity planner: the deployment's load signals turned into scale decisions per tier.

:mod:`.config` reads ``FLEXIAI["CAPACITY_PLANNER"]``, :mod:`.planner` decides (pure, on an
injected clock), :mod:`.readings` gathers the signals, :mod:`.outputs` says what was
decided (log, metrics, status page, Redis, hook) and :mod:`.service` runs the loop that
``manage.py flexiai_capacity`` starts.
"""
