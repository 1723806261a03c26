"""X-Twilio-Signature: HMAC-SHA1 over the URL (and sorted POST parameters), base64."""

from __future__ import annotations

import base64
import hashlib
import hmac

from sipua.service.streams.signature import candidate_urls, twilio_signature, valid_twilio_signature


def reference(token: str, data: str) -> str:
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def test_signature_is_hmac_sha1_of_url_then_sorted_params() -> None:
    url = "https://example.com/voice?x=1"
    assert twilio_signature("tok", url) == reference("tok", url)
    params = {"To": "+1", "CallSid": "CA1", "From": "+2"}
    assert twilio_signature("tok", url, params) == reference("tok", url + "CallSidCA1From+2To+1")


def test_validation_accepts_any_scheme_spelling_of_a_known_url_only() -> None:
    public = "wss://voice.example.com/v1/streams/sess_1"
    seen = "ws://10.0.0.5:8080/v1/streams/sess_1"
    good = twilio_signature("tok", public)
    assert valid_twilio_signature("tok", good, [public, seen])
    assert valid_twilio_signature(
        "tok", twilio_signature("tok", "https://voice.example.com/v1/streams/sess_1"), [public]
    )
    assert not valid_twilio_signature("other", good, [public, seen])
    assert not valid_twilio_signature("tok", good, [seen])  # another host or path
    assert not valid_twilio_signature("tok", twilio_signature("tok", public + "x"), [public])
    assert not valid_twilio_signature("tok", "", [public])
    assert not valid_twilio_signature("", good, [public])


def test_candidates_keep_order_and_have_no_duplicates() -> None:
    urls = candidate_urls(["wss://a/x", "wss://a/x", "", "ftp://b/"])
    assert urls[0] == "wss://a/x"
    assert set(urls) == {"wss://a/x", "https://a/x", "ws://a/x", "http://a/x", "ftp://b/"}
    assert len(urls) == len(set(urls))
