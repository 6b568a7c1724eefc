"""Every FLEXIAI setting has a system check with a stable id and a hint."""

import pytest
from django.test import override_settings

from flexiai_django.checks import RULES, check_settings

BAD_VALUES = {
    "flexiai.E002": ("BREAKER_STORE", {"BACKEND": "no.such.Store"}),
    "flexiai.E003": ("FAILURE_THRESHOLD", 0),
    "flexiai.E004": ("SUCCESS_THRESHOLD", "2"),
    "flexiai.E005": ("OPEN_SECONDS", -1),
    "flexiai.E006": ("MAX_OPEN_SECONDS", None),
    "flexiai.E007": ("OPEN_JITTER", 1.5),
    "flexiai.E008": ("HALF_OPEN_MAX_CALLS", 0),
    "flexiai.E009": ("PROBE_TTL_SECONDS", 0),
    "flexiai.E010": ("DEFAULT_TIMEOUT", "30"),
    "flexiai.E011": ("PROVIDER_REFRESH_SECONDS", -0.5),
    "flexiai.E012": ("ADAPTERS", {"mine": "nowhere.Adapter"}),
    "flexiai.E013": ("ASYNC_TRANSPORT", "nowhere.transport"),
    "flexiai.E014": ("SYNC_TRANSPORT", 42),
    "flexiai.E015": ("CACHE_ENABLED", "yes"),
    "flexiai.E016": ("CACHE_ALIAS", "missing"),
    "flexiai.E017": ("CACHE_TTL", 0),
    "flexiai.E018": ("DEGRADED_MESSAGE", ""),
    "flexiai.E019": ("RETRY_AFTER_SECONDS", 0),
    "flexiai.E020": ("ENCRYPTION_KEYS", "one-string"),
    "flexiai.E021": ("REDIS_ALIAS", ""),
    "flexiai.E022": ("CHANNEL_GROUP", "has spaces!"),
    "flexiai.E023": ("CHANNEL_LAYER", "nope"),
    "flexiai.E024": ("RESYNC_SECONDS", 0),
    "flexiai.E025": ("MAX_BODY_BYTES", 0),
    "flexiai.E026": ("MAX_TOKENS_LIMIT", 1.5),
    "flexiai.E027": ("MODEL_ALIASES", {"fast": "groq"}),
    "flexiai.E028": ("ALLOW_ANONYMOUS_LOOPBACK", "yes"),
    "flexiai.E029": ("API_KEY_CACHE_SECONDS", -1),
    "flexiai.E030": ("HISTORY_LIMIT", -5),
    "flexiai.E031": ("STATS_WINDOW_SECONDS", 0),
    "flexiai.E032": ("STATS_PUBLISH_SECONDS", "2"),
    "flexiai.E033": ("API_KEY_CACHE_SIZE", 0),
    "flexiai.E034": ("USER_RATE_LIMIT_PER_MINUTE", -1),
    "flexiai.E035": ("ANONYMOUS_RATE_LIMIT_PER_MINUTE", 1.5),
    "flexiai.E036": ("RATE_LIMIT_FALLBACK", "local"),
    "flexiai.E037": ("RATE_LIMIT_FALLBACK_WORKERS", 0),
    "flexiai.E038": ("MAX_MESSAGES", 0),
    "flexiai.E039": ("CACHE_SCOPE", "tenant"),
    "flexiai.E040": ("WEBSOCKET_ALLOWED_ORIGINS", ["example.com"]),
    "flexiai.E041": ("API_KEY_ENV_PATTERN", "(unclosed"),
    "flexiai.E042": ("DROP_UNSUPPORTED_PARAMS", "yes"),
    "flexiai.E043": ("MAX_RETRIES", -1),
    "flexiai.E044": ("RETRY_BACKOFF_SECONDS", "0.2"),
    "flexiai.E045": ("RETRY_AFTER_CAP_SECONDS", -1),
    "flexiai.E046": ("FIRST_TOKEN_TIMEOUT", 0),
    "flexiai.E047": ("STALL_TIMEOUT", "10"),
    "flexiai.E048": ("CONTINUE_STREAMS", "yes"),
    "flexiai.E049": ("CONTINUATION_INSTRUCTION", "  "),
    "flexiai.E050": ("ACTIVE_PROBE_SECONDS", -5),
    "flexiai.E051": ("HEDGED_ALIASES", "auto"),
    "flexiai.E052": ("HEDGE_BUDGET", 1.5),
    "flexiai.E053": ("HEDGE_DEFAULT_DELAY_SECONDS", 0),
    "flexiai.E054": ("ROUTING", {"auto": "fastest"}),
    "flexiai.E055": ("OVERFLOW_TIERS", ["large"]),
    "flexiai.E056": ("OVERFLOW_AT", 0),
    "flexiai.E057": ("OVERFLOW_WHILE_WARMING", "yes"),
    "flexiai.E058": ("INFLIGHT_LEASE_SECONDS", 0.5),
    "flexiai.E059": ("WARMING_TRICKLE", 1.5),
    "flexiai.E060": ("WARMUP_PROBE_SECONDS", 0),
    "flexiai.E061": ("CAPACITY_PLANNER", ["large"]),
    "flexiai.E064": ("DRAIN_SECONDS", -1),
    "flexiai.E065": ("DRAIN_TIMEOUT_SECONDS", "20"),
    "flexiai.E066": ("LEAN_PATHS", ["v1"]),
    "flexiai.E067": ("LEAN_MIDDLEWARE", "flexiai_django.middleware.FlexiAIMiddleware"),
    "flexiai.E073": ("REDIS_SENTINELS", "127.0.0.1:26379"),
    "flexiai.E076": ("SESSION_TTL_SECONDS", 0),
    "flexiai.E077": ("SESSION_FROM_USER_FIELD", "yes"),
    "flexiai.E080": ("TRACING", "yes"),
}


def ids(messages):
    return [m.id for m in messages]


def test_the_defaults_pass():
    with override_settings(FLEXIAI={}):
        assert check_settings() == []


def test_every_rule_has_a_test_case():
    assert {rule.id for rule in RULES} == set(BAD_VALUES)


@pytest.mark.parametrize("check_id", sorted(BAD_VALUES))
def test_a_bad_value_is_reported_with_its_id_and_a_hint(check_id):
    key, value = BAD_VALUES[check_id]
    with override_settings(FLEXIAI={key: value}):
        messages = check_settings()
    assert ids(messages) == [check_id]
    assert messages[0].hint and key in messages[0].msg


def test_flexiai_must_be_a_dict():
    with override_settings(FLEXIAI=["nope"]):
        assert ids(check_settings()) == ["flexiai.E001"]


def test_unknown_keys_are_warned_about():
    with override_settings(FLEXIAI={"FAILURE_TRESHOLD": 3}):
        messages = check_settings()
    assert ids(messages) == ["flexiai.W001"] and "FAILURE_TRESHOLD" in messages[0].msg


def test_a_cap_below_the_base_open_period_is_an_error():
    with override_settings(FLEXIAI={"OPEN_SECONDS": 60, "MAX_OPEN_SECONDS": 10}):
        assert ids(check_settings()) == ["flexiai.E006"]


@pytest.mark.parametrize(("planner", "check_id", "words"), [
    ({"SCALE_UP_AT": 0.2, "SCALE_DOWN_AT": 0.5}, "flexiai.E061", "SCALE_DOWN_AT <"),
    ({"INTERVAL_SECONDS": 0}, "flexiai.E061", "INTERVAL_SECONDS"),
    ({"COOLDOWN": 30}, "flexiai.E061", "unknown key 'COOLDOWN'"),
    ({"HOOK": "ftp://ops/scale"}, "flexiai.E062", "HOOK must be"),
    ({"HOOK": "no_such_module.scale"}, "flexiai.E062", "does not import"),
    ({"HOOK": "flexiai_django.conf.DEFAULTS"}, "flexiai.E062", "not callable"),
    ({"TIERS": ["large"]}, "flexiai.E063", "TIERS must be a dict"),
    ({"TIERS": {"large": {"MIN": 3, "MAX": 2}}}, "flexiai.E063", "MIN <= MAX"),
    ({"TIERS": {"small": {"LEAD": 20}}}, "flexiai.E063", "unknown key 'LEAD'"),
    ({"TIERS": {"gpu": {"REQUESTS_PER_REPLICA": 0}}}, "flexiai.E063", "REQUESTS_PER_REPLICA"),
])
def test_capacity_planner_problems_name_their_option(planner, check_id, words):
    with override_settings(FLEXIAI={"CAPACITY_PLANNER": planner}):
        messages = check_settings()
    assert ids(messages) == [check_id]
    assert words in messages[0].msg and messages[0].hint


def test_a_complete_capacity_planner_passes():
    planner = {"INTERVAL_SECONDS": 10, "WINDOW_SECONDS": 30, "SCALE_UP_AT": 0.9,
               "SCALE_DOWN_AT": 0.2, "TARGET_UTILISATION": 0.5, "OVERFLOW_UP_AT": 0.1,
               "COOLDOWN_SECONDS": 0, "HOOK": "https://ops.example/scale",
               "TIERS": {"large": {"LEAD_SECONDS": 180, "MIN": 1, "MAX": 4},
                         "gpu": {"MIN": 0, "MAX": 2, "REQUESTS_PER_REPLICA": 3,
                                 "FIRST_TOKEN_P95_SECONDS": 2.5}}}
    with override_settings(FLEXIAI={"CAPACITY_PLANNER": planner}):
        assert check_settings() == []
    with override_settings(FLEXIAI={"CAPACITY_PLANNER": {"HOOK": "flexiai_django.chat"}}):
        assert check_settings() == []


def test_encryption_keys_are_never_echoed():
    with override_settings(FLEXIAI={"ENCRYPTION_KEYS": ["ok", ""]}):
        messages = check_settings()
    assert ids(messages) == ["flexiai.E020"] and "'ok'" not in messages[0].msg


@pytest.mark.parametrize("hosts", [["redis://x:6379"], [{"address": "redis://x",
                                                            "socket_timeout": 5}]])
def test_a_channel_layer_that_times_out_its_own_receive_is_warned_about(hosts):
    from flexiai_django.checks import check_channel_layer

    layer = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                         "CONFIG": {"hosts": hosts}}}
    with override_settings(CHANNEL_LAYERS=layer):
        assert ids(check_channel_layer()) == ["flexiai.W002"]
    layer["default"]["CONFIG"]["hosts"] = [{"address": "redis://x", "socket_timeout": 10}]
    with override_settings(CHANNEL_LAYERS=layer):
        assert check_channel_layer() == []


def test_anonymous_access_without_debug_is_warned_about():
    from flexiai_django.checks import check_anonymous

    with override_settings(FLEXIAI={"ALLOW_ANONYMOUS_LOOPBACK": True}, DEBUG=False):
        assert ids(check_anonymous()) == ["flexiai.W003"]
    with override_settings(FLEXIAI={"ALLOW_ANONYMOUS_LOOPBACK": True}, DEBUG=True):
        assert check_anonymous() == []


def test_checks_run_through_django(capsys):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    with override_settings(FLEXIAI={"FAILURE_THRESHOLD": -1}), pytest.raises(SystemCheckError):
        call_command("check")
