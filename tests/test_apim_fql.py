"""APIM signing (the documented rules and worked example), FQL both ways, retry helpers."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enosprov.backends import apim, fql
from enosprov.backends.http import RateLimiter, backoff_delay
from enosprov.domain.models import SearchQuery
from enosprov.errors import InvalidArgumentError


def test_documented_parameter_ordering_example():
    # EnOS docs: URL .../m/v1/b?k3=v3&k1=v1&k2=v2 gives paramsData = k1v1k2v2k3v3{body}
    body = '{"a":1}'
    assert apim.params_data({"k3": "v3", "k1": "v1", "k2": "v2"}, body) == "k1v1k2v2k3v3" + body


def test_request_signature_is_sha256_of_token_params_body_timestamp_secret():
    token, ts, secret = "tok", 1548753362502, "sec"
    query = {"orgId": "o1", "action": "get", "sn": "abc"}
    expected = hashlib.sha256(f"{token}actiongetorgIdo1snabc{ts}{secret}".encode()).hexdigest()
    assert apim.request_signature(token, query, None, ts, secret) == expected
    with_body = apim.request_signature(token, query, b'{"x":"\xc3\xa9"}', ts, secret)
    assert (
        with_body
        == hashlib.sha256(
            f'{token}actiongetorgIdo1snabc{{"x":"é"}}{ts}{secret}'.encode()
        ).hexdigest()
    )


def test_token_encryption():
    assert (
        apim.token_encryption("AK", 1700000000000, "SK")
        == hashlib.sha256(b"AK1700000000000SK").hexdigest()
    )


def test_signature_depends_on_exact_body_bytes():
    q = {"action": "create", "orgId": "o"}
    a = apim.request_signature("t", q, '{"a":1,"b":2}', 1, "s")
    b = apim.request_signature("t", q, '{"b":2,"a":1}', 1, "s")
    assert a != b


def test_render_and_parse_round_trip():
    q = SearchQuery(
        group_id="g1",
        sns=("a", "b"),
        device_sns=("O'Brien", "x"),
        batch_order=3,
        product_key="pk",
        region_id="eu2",
        current_status="init",
        created_after=5,
        created_before=9,
        device_data=(("phase", "single"),),
        batch_tag="B-1",
        allocate_status="init",
    )
    expression, rest = fql.render(q)
    assert "deviceData.deviceSn in ('O''Brien', 'x')" in expression
    assert (rest.batch_tag, rest.allocate_status, rest.connect_status) == ("B-1", "init", None)
    back = fql.parse(expression)
    for name in ("group_id", "sns", "device_sns", "batch_order", "product_key", "region_id",
                 "current_status", "created_after", "created_before", "device_data"):  # fmt: skip
        assert getattr(back, name) == getattr(q, name), name
    assert back.batch_tag is None


@pytest.mark.parametrize(
    ("expression", "field", "value"),
    [
        ("createTime > 10", "created_after", 11),
        ("createTime <= 10", "created_before", 11),
        ("sn like 'ab%'", "sn_like", "ab%"),
        ("groupId in ('g')", "group_id", "g"),
        ("sn = 'x'", "sns", ("x",)),
    ],
)
def test_parse_operators(expression, field, value):
    assert getattr(fql.parse(expression), field) == value


@pytest.mark.parametrize(
    "expression",
    ["groupId = 'a' or groupId = 'b'", "batchTag = 'x'", "sn", "groupId = ", "phase like 'x'",
     "createTime != 3", "sn = 'unterminated"],
)  # fmt: skip
def test_parse_refuses_what_it_cannot_honour(expression):
    with pytest.raises(InvalidArgumentError):
        fql.parse(expression)


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=150, deadline=None)
@given(st.lists(text, min_size=1, max_size=5), text)
def test_any_strings_survive_quoting(device_sns, value):
    q = SearchQuery(device_sns=tuple(device_sns), device_data=(("site", value),))
    back = fql.parse(fql.render(q)[0])
    expected = tuple(device_sns)
    assert back.device_sns == expected
    assert back.device_data == (("site", value),)


def test_backoff_grows_and_honours_retry_after():
    assert backoff_delay(0, rnd=lambda: 1.0) == pytest.approx(0.1)
    assert backoff_delay(3, rnd=lambda: 1.0) == pytest.approx(0.8)
    assert backoff_delay(30, rnd=lambda: 1.0) == pytest.approx(5.0)  # capped
    assert backoff_delay(0, retry_after=2.0, rnd=lambda: 0.5) == 2.0


def test_rate_limiter_spaces_calls():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(30):
        limiter.acquire()
    # a burst of one second's worth (10), then one call per 0.1 s
    assert now[0] == pytest.approx(2.0, abs=0.11)
    RateLimiter(None).acquire()  # off: never sleeps
