"""Tests of sipua.sip.auth and sipua.sip.credentials (digest authentication)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipua.sip import credentials as credentials_module
from sipua.sip.auth import (
    REASON_BAD_CREDENTIALS,
    REASON_NC_REPLAYED,
    REASON_NONCE_EXPIRED,
    REASON_NONCE_INVALID,
    Authorization,
    AuthOutcome,
    AuthResult,
    DigestClient,
    DigestServer,
    GiveUp,
    HA1Table,
    NonceCounts,
    RetryWith,
    challenge_header_name,
    credentials_header_name,
)
from sipua.sip.credentials import (
    ALGORITHMS,
    AuthHeaderError,
    AuthValue,
    DigestChallenge,
    DigestCredentials,
    digest_response,
    format_auth_value,
    get_algorithm,
    ha1,
    ha2,
    parse_auth_values,
    parse_challenges,
    parse_credentials,
    session_ha1,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "auth"
VECTORS = json.loads((DATA / "digest-vectors.json").read_text())["vectors"]
SIPP_CAPTURES = json.loads((DATA / "sipp-3.6.1-captures.json").read_text())["captures"]

REALM = "sipua.test"
URI = "sip:bob@sipua.test"
SECRET = b"0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000.0
HAS_SHA512_256 = "SHA-512-256" in ALGORITHMS


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def users(password: str = "s3cret") -> HA1Table:
    table = HA1Table()
    table.add("alice", REALM, password)
    return table


def only(decision: RetryWith | GiveUp) -> Authorization:
    assert isinstance(decision, RetryWith), decision
    assert len(decision.authorizations) == 1
    return decision.authorizations[0]


def creds_of(authorization: Authorization | str) -> DigestCredentials:
    value = authorization.value if isinstance(authorization, Authorization) else authorization
    return DigestCredentials.parse(value)


# ---------------------------------------------------------------------------------------------
# Header grammar
# ---------------------------------------------------------------------------------------------


def test_rfc7235_example_holds_two_challenges_with_escapes():
    value = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'
    newauth, basic = parse_challenges(value)
    assert newauth.scheme == "Newauth"
    assert newauth.params == (("realm", "apps"), ("type", "1"), ("title", 'Login to "apps"'))
    assert basic.scheme == "Basic" and basic.param("realm") == "simple"
    assert not newauth.is_digest


def test_param_names_are_case_insensitive_values_are_not():
    challenge = DigestChallenge.parse('dIgEsT REALM="Ex", NoNcE="AbC", QOP="Auth", Algorithm=md5')
    assert (challenge.realm, challenge.nonce) == ("Ex", "AbC")
    assert challenge.qop == ("auth",)
    assert challenge.algorithm == "MD5"


def test_token68_and_unknown_schemes_parse_without_error():
    basic, bearer, other = parse_challenges(
        ["Basic dXNlcjpwYXNz==", "Bearer abc.def-ghi_jkl~", 'X-Custom a=1, b="two, three"']
    )
    assert basic.token68 == "dXNlcjpwYXNz==" and basic.params == ()
    assert bearer.token68 == "abc.def-ghi_jkl~"
    assert other.scheme == "X-Custom" and other.params == (("a", "1"), ("b", "two, three"))
    assert parse_auth_values("Negotiate") == [AuthValue("Negotiate")]


def test_several_challenges_in_one_value_and_bare_qop_list():
    digest, basic = parse_challenges(
        'Digest realm="r", nonce="n", qop=auth,auth-int, algorithm=MD5, Basic realm="r"'
    )
    parsed = DigestChallenge.from_auth_value(digest)
    assert parsed.qop == ("auth", "auth-int")
    assert parsed.algorithm == "MD5"
    assert basic.scheme == "Basic"


def test_folded_value_and_empty_list_elements():
    value = 'Digest realm="r",\r\n  nonce="n" , ,\tqop="auth" ,'
    challenge = DigestChallenge.parse(value)
    assert (challenge.realm, challenge.nonce, challenge.qop) == ("r", "n", ("auth",))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        'Digest realm="unterminated',
        'Digest realm="x" nonce="y"',
        'Digest realm="x", realm="y"',
        "Digest=x",
        'Digest realm="a\x00b"',
        'Digest realm="a\\\nb"',
        'Digest realm="x",, =y',
        "Basic abc==, realm=x",
        '"Digest" realm=x',
        "Digest realm=\u00e9",
        "Dig\u00e9st realm=x",
        'Digest realm="x"\r\nnonce="y"',
        "Digest " + "a" * 20000,
    ],
)
def test_malformed_values_raise_auth_header_error(value):
    with pytest.raises(AuthHeaderError) as excinfo:
        parse_auth_values(value)
    assert excinfo.value.status_hint == 400


@pytest.mark.parametrize(
    ("value", "missing"),
    [
        ('Digest nonce="n"', "realm"),
        ('Digest realm="r"', "nonce"),
        ("Digest realm", "token68"),  # a token68, fine for other schemes
        ("Digest realm=", "token68"),
    ],
)
def test_digest_challenge_requires_realm_and_nonce(value, missing):
    with pytest.raises(AuthHeaderError, match=missing):
        DigestChallenge.parse(value)


BASE_CREDS = 'Digest username="u", realm="r", nonce="n", uri="sip:x", response="0a"'


@pytest.mark.parametrize(
    "value",
    [
        BASE_CREDS.replace(', response="0a"', ""),
        BASE_CREDS.replace('username="u", ', ""),
        BASE_CREDS.replace(', uri="sip:x"', ""),
        BASE_CREDS + ", qop=auth",  # no nc or cnonce
        BASE_CREDS + ', qop=auth, nc=1, cnonce="c"',  # nc not 8 hex digits
        BASE_CREDS + ", username*=UTF-8''%C3%A9",  # both forms of username
        BASE_CREDS + ", " + BASE_CREDS,  # two credentials in one value
        "Basic dXNlcjpwYXNz",
    ],
)
def test_malformed_digest_credentials(value):
    with pytest.raises(AuthHeaderError):
        DigestCredentials.parse(value)


def test_username_star_is_decoded():
    value = BASE_CREDS.replace('username="u"', "username*=UTF-8''J%C3%A4s%C3%B8n")
    assert DigestCredentials.parse(value).username == "Jäsøn"


def test_serialised_credentials_quote_and_escape():
    creds = DigestCredentials(
        username='al"ice\\',
        realm="r",
        nonce="n",
        uri="sip:bob@x;transport=tcp",
        response="00ff",
        algorithm="SHA-256",
        cnonce="c",
        qop="auth",
        nc="0000000a",
    )
    header = creds.to_header()
    # RFC 3261 §25.1: message-qop, nc and algorithm are tokens, the rest quoted.
    assert "qop=auth," in header and "nc=0000000a" in header and "algorithm=SHA-256" in header
    assert 'username="al\\"ice\\\\"' in header
    assert DigestCredentials.parse(header) == creds


def test_challenge_serialises_qop_quoted_and_stale_unquoted():
    challenge = DigestChallenge(
        realm="r", nonce="n", algorithm="MD5", qop=("auth", "auth-int"), stale=True
    )
    header = challenge.to_header()
    assert 'qop="auth,auth-int"' in header and "stale=true" in header
    assert DigestChallenge.parse(header) == challenge


def test_serialising_control_characters_is_refused():
    with pytest.raises(AuthHeaderError):
        DigestChallenge(realm="a\r\nInjected: 1", nonce="n").to_header()


# Printable text, with the characters the grammar cares about over-represented.
header_text = st.text(
    alphabet=st.sampled_from(list("Digest realm=nonce\"\\,\t =abcAB01/:@é\r\n\x00*'") + ["\x7f"]),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), header_text))
def test_parser_raises_only_auth_header_error(text):
    for parse in (
        parse_auth_values,
        parse_challenges,
        parse_credentials,
        DigestChallenge.parse,
        DigestCredentials.parse,
    ):
        try:
            parse(text)
        except AuthHeaderError:
            pass


token = st.text(
    alphabet=st.sampled_from(
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!%*+`'")
    ),
    min_size=1,
    max_size=12,
)
quotable = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from(['"', "\\", "\t"]),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            token,
            st.dictionaries(token.map(str.lower), quotable, min_size=1, max_size=5),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_format_then_parse_round_trips(challenges):
    values = [AuthValue(scheme, tuple(params.items())) for scheme, params in challenges]
    joined = ", ".join(format_auth_value(v) for v in values)
    assert parse_auth_values(joined) == values


# ---------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['source']} {v['algorithm']}")
def test_rfc_vectors(vector):
    alg = vector["algorithm"]
    stored = ha1(vector["username"], vector["realm"], vector["password"], alg)
    assert stored == vector["ha1"]
    assert ha2(vector["method"], vector["uri"], alg, qop=vector["qop"]) == vector["ha2"]
    response = digest_response(
        stored,
        nonce=vector["nonce"],
        method=vector["method"],
        uri=vector["uri"],
        algorithm=alg,
        qop=vector["qop"],
        nc=vector["nc"],
        cnonce=vector["cnonce"],
    )
    assert response == vector["response"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['source']} {v['algorithm']}")
def test_client_reproduces_rfc_vectors(vector):
    challenge = DigestChallenge(
        realm=vector["realm"],
        nonce=vector["nonce"],
        algorithm=vector["algorithm"],
        qop=("auth", "auth-int"),
        opaque=vector["opaque"],
    ).to_header()
    client = DigestClient(
        vector["username"], vector["password"], cnonce_factory=lambda: vector["cnonce"]
    )
    sent = creds_of(only(client.respond(challenge, vector["method"], vector["uri"])))
    assert sent.response == vector["response"]
    assert (sent.nc, sent.qop, sent.opaque) == (vector["nc"], "auth", vector["opaque"])


def test_rfc2069_response_without_qop():
    v = VECTORS[0]
    expected = md5_hex(f"{v['ha1']}:{v['nonce']}:{v['ha2']}")
    got = digest_response(v["ha1"], nonce=v["nonce"], method=v["method"], uri=v["uri"])
    assert got == expected


def test_sess_and_auth_int_follow_the_rfc_formulas():
    stored = ha1("u", "r", "p", "SHA-256")
    h = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    sess = h(f"{stored}:n:c")
    assert session_ha1(stored, "n", "c", "SHA-256-sess") == sess
    body = b"v=0\r\n"
    body_hash = hashlib.sha256(body).hexdigest()
    hash2 = h(f"INVITE:sip:x:{body_hash}")
    assert ha2("INVITE", "sip:x", "SHA-256", qop="auth-int", body=body) == hash2
    expected = h(f"{sess}:n:00000001:c:auth-int:{hash2}")
    got = digest_response(
        stored,
        nonce="n",
        method="INVITE",
        uri="sip:x",
        algorithm="SHA-256-sess",
        qop="auth-int",
        nc="00000001",
        cnonce="c",
        body=body,
    )
    assert got == expected


def test_sha512_256_is_fips_180_4_or_cleanly_absent():
    if not HAS_SHA512_256:
        assert get_algorithm("SHA-512-256") is None
        assert get_algorithm("SHA-512-256-sess") is None
        return
    # FIPS 180-4 example: SHA-512/256("abc"), its own initial values, not truncated SHA-512.
    alg = get_algorithm("sha-512-256")
    assert alg.hash(b"abc") == "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    assert alg.hash(b"abc") != hashlib.sha512(b"abc").hexdigest()[:64]


def test_algorithm_names_are_case_insensitive_and_md5_is_the_default():
    assert get_algorithm(None).name == "MD5"
    assert get_algorithm("sha-256-SESS").name == "SHA-256-sess"
    assert get_algorithm("SHA-1") is None


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------


def test_challenge_offers_sha256_then_md5_with_one_nonce():
    server = DigestServer(SECRET)
    values = server.challenge(REALM, T0)
    first, second = (DigestChallenge.parse(v) for v in values)
    assert (first.algorithm, second.algorithm) == ("SHA-256", "MD5")
    for challenge in (first, second):
        assert challenge.realm == REALM
        assert challenge.qop == ("auth",)
        assert challenge.opaque
        assert not challenge.stale
    assert first.nonce == second.nonce
    assert 'qop="auth"' in values[0]
    assert server.challenge(REALM, T0)[0] != values[0]  # a fresh nonce each time
    assert all("stale=true" in v for v in server.challenge(REALM, T0, stale=True))


def test_nonce_carries_its_time_and_a_mac():
    server = DigestServer(SECRET)
    nonce = DigestChallenge.parse(server.challenge(REALM, T0)[0]).nonce
    raw = base64.urlsafe_b64decode(nonce)
    assert int.from_bytes(raw[1:9], "big") == int(T0 * 1000)
    other_secret = DigestServer(b"another secret, also 32 octets!!")
    assert server._check_nonce(nonce, REALM, False) is not None
    assert other_secret._check_nonce(nonce, REALM, False) is None
    assert server._check_nonce(nonce, "other.realm", False) is None
    assert server._check_nonce(nonce, REALM, True) is None  # a 401 nonce is not a 407 one


def round_trip(
    server, client, table, *, method="INVITE", uri=URI, now=T0 + 1, proxy=False, body=b""
):
    challenge = server.challenge(REALM, T0, proxy=proxy)
    authorization = only(client.respond(challenge, method, uri, proxy=proxy, body=body))
    assert authorization.header_name == credentials_header_name(proxy)
    result = server.verify(
        method, authorization.value, table, now, request_uri=uri, proxy=proxy, body=body
    )
    return authorization, result


@pytest.mark.parametrize(
    "algorithm",
    ["MD5", "SHA-256", "MD5-sess", "SHA-256-sess"]
    + (["SHA-512-256", "SHA-512-256-sess"] if HAS_SHA512_256 else []),
)
def test_round_trip_per_algorithm(algorithm):
    server = DigestServer(SECRET, algorithms=[algorithm])
    authorization, result = round_trip(server, DigestClient("alice", "s3cret"), users())
    assert creds_of(authorization).algorithm == algorithm
    assert result == AuthResult(AuthOutcome.OK, "", "alice", REALM, algorithm, None)


def test_round_trip_proxy_and_auth_int():
    server = DigestServer(SECRET, qop=("auth-int",))
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    authorization, result = round_trip(
        server, DigestClient("alice", "s3cret"), users(), proxy=True, body=body
    )
    assert result.ok and creds_of(authorization).qop == "auth-int"
    assert challenge_header_name(True) == "Proxy-Authenticate"
    # The body is covered: a changed body fails.
    again = only(
        DigestClient("alice", "s3cret").respond(
            server.challenge(REALM, T0, proxy=True), "INVITE", URI, proxy=True, body=body
        )
    )
    tampered = server.verify(
        "INVITE", again.value, users(), T0 + 1, request_uri=URI, proxy=True, body=b"v=1\r\n"
    )
    assert tampered.outcome is AuthOutcome.FAILED and tampered.status_hint == 407


def test_client_with_stored_ha1_only():
    client = DigestClient(
        "alice", ha1s={(REALM, "SHA-256"): ha1("alice", REALM, "s3cret", "SHA-256")}
    )
    authorization, result = round_trip(DigestServer(SECRET), client, users())
    assert result.ok and creds_of(authorization).algorithm == "SHA-256"
    only_md5 = DigestServer(SECRET, algorithms=["MD5"])
    assert isinstance(client.respond(only_md5.challenge(REALM, T0), "INVITE", URI), GiveUp)


def test_nonce_goes_stale_after_its_lifetime():
    server = DigestServer(SECRET, nonce_lifetime=60)
    client = DigestClient("alice", "s3cret")
    table = users()
    first = only(client.respond(server.challenge(REALM, T0), "REGISTER", URI))
    assert server.verify("REGISTER", first.value, table, T0 + 60, request_uri=URI).ok
    later = client.authorize("REGISTER", URI)[0]
    result = server.verify("REGISTER", later.value, table, T0 + 60.5, request_uri=URI)
    assert result.outcome is AuthOutcome.STALE and result.reason == REASON_NONCE_EXPIRED
    assert result.status_hint == 401
    # The caller challenges again with stale=true; the client answers without giving up.
    decision = client.respond(
        server.challenge(REALM, T0 + 61, stale=True), "REGISTER", URI, sent=[later]
    )
    retry = only(decision)
    assert server.verify("REGISTER", retry.value, table, T0 + 62, request_uri=URI).ok


def test_expired_nonce_with_wrong_password_is_not_stale():
    server = DigestServer(SECRET, nonce_lifetime=60)
    bad = only(DigestClient("alice", "wrong").respond(server.challenge(REALM, T0), "INVITE", URI))
    result = server.verify("INVITE", bad.value, users(), T0 + 120, request_uri=URI)
    assert result.outcome is AuthOutcome.FAILED and result.reason == REASON_BAD_CREDENTIALS


def test_nonce_from_the_future_is_refused():
    server = DigestServer(SECRET, max_clock_skew=5)
    authorization = only(
        DigestClient("alice", "s3cret").respond(server.challenge(REALM, T0), "INVITE", URI)
    )
    assert not server.verify("INVITE", authorization.value, users(), T0 - 10, request_uri=URI).ok
    assert not server.verify(
        "INVITE", authorization.value, users(), float("nan"), request_uri=URI
    ).ok


def tamper(nonce: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(nonce))
    raw[5] ^= 0x01  # move the issue time
    return base64.urlsafe_b64encode(bytes(raw)).decode()


def test_tampered_nonce_is_rejected_even_with_a_matching_response():
    server = DigestServer(SECRET)
    challenge = DigestChallenge.parse(server.challenge(REALM, T0)[0])
    forged = DigestChallenge(
        realm=REALM,
        nonce=tamper(challenge.nonce),
        algorithm="SHA-256",
        qop=("auth",),
        opaque=challenge.opaque,
    )
    # Someone who knows the password answers the forged nonce correctly: still refused.
    authorization = only(DigestClient("alice", "s3cret").respond(forged.to_header(), "INVITE", URI))
    result = server.verify("INVITE", authorization.value, users(), T0 + 1, request_uri=URI)
    assert result.outcome is AuthOutcome.FAILED and result.reason == REASON_NONCE_INVALID
    garbage = authorization.value.replace(forged.nonce, "not-a-nonce")
    assert (
        server.verify("INVITE", garbage, users(), T0 + 1, request_uri=URI).reason
        == REASON_NONCE_INVALID
    )


def test_previous_secret_still_verifies_during_rotation():
    old = DigestServer(SECRET)
    authorization = only(
        DigestClient("alice", "s3cret").respond(old.challenge(REALM, T0), "INVITE", URI)
    )
    new_secret = b"the next secret, 32 octets long!"
    rotated = DigestServer(new_secret, previous_secrets=[SECRET])
    assert rotated.verify("INVITE", authorization.value, users(), T0 + 1, request_uri=URI).ok
    assert (
        not DigestServer(new_secret)
        .verify("INVITE", authorization.value, users(), T0 + 1, request_uri=URI)
        .ok
    )


def test_replayed_or_lower_nc_is_refused():
    server = DigestServer(SECRET)
    client = DigestClient("alice", "s3cret")
    table = users()
    first = only(client.respond(server.challenge(REALM, T0), "INVITE", URI))
    assert server.verify("INVITE", first.value, table, T0 + 1, request_uri=URI).ok
    replay = server.verify("INVITE", first.value, table, T0 + 2, request_uri=URI)
    assert not replay.ok
    assert replay.outcome is AuthOutcome.STALE and replay.reason == REASON_NC_REPLAYED
    second, third = client.authorize("BYE", URI)[0], client.authorize("BYE", URI)[0]
    assert [creds_of(a).nc for a in (first, second, third)] == ["00000001", "00000002", "00000003"]
    assert server.verify("BYE", third.value, table, T0 + 3, request_uri=URI).ok
    lower = server.verify("BYE", second.value, table, T0 + 4, request_uri=URI)
    assert not lower.ok and lower.reason == REASON_NC_REPLAYED


def test_failed_attempts_do_not_consume_nc():
    server = DigestServer(SECRET)
    authorization = only(
        DigestClient("alice", "s3cret").respond(server.challenge(REALM, T0), "INVITE", URI)
    )
    assert not server.verify(
        "INVITE", authorization.value, users("other"), T0 + 1, request_uri=URI
    ).ok
    assert server.verify("INVITE", authorization.value, users(), T0 + 1, request_uri=URI).ok


def test_nc_table_is_bounded_and_evicted_nonces_cannot_replay():
    server = DigestServer(SECRET, max_nonces=2)
    table = users()
    answers = []
    for i in range(3):
        client = DigestClient("alice", "s3cret")
        answer = only(client.respond(server.challenge(REALM, T0 + i), "INVITE", URI))
        assert server.verify("INVITE", answer.value, table, T0 + 10, request_uri=URI).ok
        answers.append(answer)
    assert len(server.nonce_counts) == 2
    # The first nonce was evicted; its old nc must not become usable again.
    assert not server.verify("INVITE", answers[0].value, table, T0 + 11, request_uri=URI).ok
    # Entries die with their nonce's lifetime.
    fresh = only(
        DigestClient("alice", "s3cret").respond(server.challenge(REALM, T0 + 1000), "INVITE", URI)
    )
    assert server.verify("INVITE", fresh.value, table, T0 + 1001, request_uri=URI).ok
    assert len(server.nonce_counts) == 1


def test_nonce_counts_directly():
    counts = NonceCounts(max_entries=1)
    assert counts.is_fresh("a", 1.0, 1)
    counts.record("a", 1.0, 5)
    assert not counts.is_fresh("a", 1.0, 5) and counts.is_fresh("a", 1.0, 6)
    counts.record("b", 2.0, 1)  # evicts "a"
    assert not counts.is_fresh("a", 1.0, 99)
    assert counts.is_fresh("c", 3.0, 1)


def test_unknown_user_and_wrong_password_are_indistinguishable(monkeypatch):
    hashes = 0
    real = credentials_module._hexdigest

    def counting(name, data):
        nonlocal hashes
        hashes += 1
        return real(name, data)

    monkeypatch.setattr(credentials_module, "_hexdigest", counting)
    lookups = []

    def lookup_with(table):
        def lookup(username, realm, algorithm):
            lookups.append((username, realm, algorithm))
            return table(username, realm, algorithm)

        return lookup

    for algorithm in ("SHA-256", "MD5-sess"):
        srv = DigestServer(SECRET, algorithms=[algorithm])
        authorization = only(
            DigestClient("alice", "guess").respond(srv.challenge(REALM, T0), "INVITE", URI)
        )
        known_user, no_user = lookup_with(users()), lookup_with(HA1Table())
        hashes = 0
        wrong = srv.verify("INVITE", authorization.value, known_user, T0 + 1, request_uri=URI)
        work_wrong, hashes = hashes, 0
        unknown = srv.verify("INVITE", authorization.value, no_user, T0 + 1, request_uri=URI)
        work_unknown = hashes
        assert wrong == unknown
        assert wrong.outcome is AuthOutcome.FAILED and wrong.reason == REASON_BAD_CREDENTIALS
        assert work_wrong == work_unknown > 0
    assert lookups[0] == lookups[1] == ("alice", REALM, "SHA-256")
    assert lookups[2] == ("alice", REALM, "MD5")  # -sess looks up the HA1 of its hash


def test_wrong_uri_is_rejected_and_can_be_relaxed():
    server = DigestServer(SECRET)
    authorization = only(
        DigestClient("alice", "s3cret").respond(server.challenge(REALM, T0), "INVITE", URI)
    )
    result = server.verify(
        "INVITE", authorization.value, users(), T0 + 1, request_uri="sip:carol@sipua.test"
    )
    assert result.outcome is AuthOutcome.FAILED and "uri" in result.reason
    lenient = DigestServer(SECRET, uri_matches=lambda digest_uri, request_uri: True)
    assert lenient.verify(
        "INVITE", authorization.value, users(), T0 + 1, request_uri="sip:carol@x"
    ).ok


def test_realm_pinning_and_opaque():
    server = DigestServer(SECRET)
    authorization = only(
        DigestClient("alice", "s3cret").respond(server.challenge(REALM, T0), "INVITE", URI)
    )
    assert not server.verify(
        "INVITE", authorization.value, users(), T0 + 1, request_uri=URI, realm="elsewhere"
    ).ok
    sent = creds_of(authorization)
    altered = authorization.value.replace(sent.opaque, "x" + sent.opaque[1:])
    assert (
        server.verify("INVITE", altered, users(), T0 + 1, request_uri=URI).reason
        == "opaque not ours"
    )
    # Leaving opaque out is tolerated (some clients do).
    without = DigestCredentials(**{**_fields(sent), "opaque": None}).to_header()
    assert server.verify("INVITE", without, users(), T0 + 1, request_uri=URI).ok


def _fields(creds: DigestCredentials) -> dict:
    return {name: getattr(creds, name) for name in DigestCredentials.__slots__}


def test_algorithm_not_offered_is_refused():
    server = DigestServer(SECRET, algorithms=["SHA-256"])
    md5_server = DigestServer(SECRET, algorithms=["MD5"])
    authorization = only(
        DigestClient("alice", "s3cret").respond(md5_server.challenge(REALM, T0), "INVITE", URI)
    )
    result = server.verify("INVITE", authorization.value, users(), T0 + 1, request_uri=URI)
    assert result.outcome is AuthOutcome.FAILED and result.reason == "algorithm not offered"


def test_rfc2069_credentials_need_require_qop_off():
    no_qop_challenge = DigestServer(SECRET, qop=(), require_qop=False)
    authorization, result = round_trip(no_qop_challenge, DigestClient("alice", "s3cret"), users())
    sent = creds_of(authorization)
    assert (sent.qop, sent.nc, sent.cnonce) == (None, None, None)
    assert result.ok
    strict = DigestServer(SECRET)
    assert (
        strict.verify("INVITE", authorization.value, users(), T0 + 1, request_uri=URI).reason
        == "qop required"
    )


@pytest.mark.parametrize(
    ("value", "outcome", "status"),
    [
        ('Digest username="alice", realm=', AuthOutcome.MALFORMED, 400),
        ('Digest username="alice"', AuthOutcome.MALFORMED, 400),
        ("Basic YWxpY2U6czNjcmV0", AuthOutcome.FAILED, 401),
        ("", AuthOutcome.MALFORMED, 400),
    ],
)
def test_malformed_and_foreign_credentials(value, outcome, status):
    result = DigestServer(SECRET).verify("INVITE", value, users(), T0, request_uri=URI)
    assert (result.outcome, result.status_hint) == (outcome, status)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), header_text.map(lambda t: "Digest " + t)))
def test_verify_never_raises(text):
    server = DigestServer(SECRET)
    result = server.verify("INVITE", text, users(), T0, request_uri=URI)
    assert isinstance(result, AuthResult) and not result.ok


@settings(max_examples=100, deadline=None)
@given(
    username=st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20
    ),
    password=st.text(max_size=20),
)
def test_round_trip_any_username_and_password(username, password):
    table = HA1Table()
    table.add(username, REALM, password)
    server = DigestServer(SECRET)
    authorization = only(
        DigestClient(username, password).respond(server.challenge(REALM, T0), "MESSAGE", URI)
    )
    assert server.verify("MESSAGE", authorization.value, table, T0 + 1, request_uri=URI).ok


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


def test_client_prefers_the_strongest_offer_whatever_the_order():
    offers = [
        'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
        'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="n3", algorithm=UNKNOWN-9, qop="auth"',
    ]
    chosen = creds_of(only(DigestClient("u", "p").respond(offers, "INVITE", "sip:x")))
    assert (chosen.algorithm, chosen.nonce) == ("SHA-256", "n2")
    if HAS_SHA512_256:
        offers.append('Digest realm="r", nonce="n4", algorithm=SHA-512-256, qop="auth"')
        chosen = creds_of(only(DigestClient("u", "p").respond(offers, "INVITE", "sip:x")))
        assert chosen.algorithm == "SHA-512-256"
    md5_only = DigestClient("u", "p", algorithms=["MD5"])
    assert creds_of(only(md5_only.respond(offers, "INVITE", "sip:x"))).algorithm == "MD5"


def test_client_refuses_to_loop_on_a_second_non_stale_challenge():
    server = DigestServer(SECRET)
    client = DigestClient("alice", "wrong")
    first = only(client.respond(server.challenge(REALM, T0), "INVITE", URI))
    assert first.solicited and first.attempt == 1
    result = server.verify("INVITE", first.value, users(), T0 + 1, request_uri=URI)
    assert result.outcome is AuthOutcome.FAILED
    again = client.respond(server.challenge(REALM, T0 + 1), "INVITE", URI, sent=[first])
    assert isinstance(again, GiveUp)


def test_stale_retry_is_bounded():
    client = DigestClient("alice", "s3cret", max_attempts=3)
    server = DigestServer(SECRET)
    sent = [only(client.respond(server.challenge(REALM, T0), "INVITE", URI))]
    for i in range(2):
        decision = client.respond(
            server.challenge(REALM, T0 + i, stale=True), "INVITE", URI, sent=sent
        )
        sent = [only(decision)]
        assert sent[0].attempt == i + 2
    decision = client.respond(server.challenge(REALM, T0 + 5, stale=True), "INVITE", URI, sent=sent)
    assert isinstance(decision, GiveUp)
    # A server that calls its own fresh nonce stale is not answered again.
    same = DigestChallenge(**{**_challenge_fields(sent[0]), "stale": True}).to_header()
    assert isinstance(
        DigestClient("alice", "s3cret").respond(
            same,
            "INVITE",
            URI,
            sent=[Authorization("Authorization", sent[0].value, REALM, sent[0].nonce, True, 1)],
        ),
        GiveUp,
    )


def _challenge_fields(authorization: Authorization) -> dict:
    return {"realm": authorization.realm, "nonce": authorization.nonce, "qop": ("auth",)}


def test_reused_nonce_gets_one_fresh_try():
    server = DigestServer(SECRET)
    client = DigestClient("alice", "s3cret")
    only(client.respond(server.challenge(REALM, T0), "REGISTER", URI))
    preemptive = client.authorize("REGISTER", URI)
    assert len(preemptive) == 1 and not preemptive[0].solicited
    # The server lost its secret (restart): it challenges without stale.
    restarted = DigestServer(b"a brand new secret after restart")
    retry = only(
        client.respond(restarted.challenge(REALM, T0 + 5), "REGISTER", URI, sent=preemptive)
    )
    assert restarted.verify("REGISTER", retry.value, users(), T0 + 6, request_uri=URI).ok
    assert creds_of(retry).nc == "00000001"


def test_nc_restarts_with_a_new_nonce_and_proxy_state_is_separate():
    server = DigestServer(SECRET)
    client = DigestClient("alice", "s3cret")
    only(client.respond(server.challenge(REALM, T0), "REGISTER", URI))
    assert creds_of(client.authorize("REGISTER", URI)[0]).nc == "00000002"
    assert client.authorize("REGISTER", URI, proxy=True) == ()
    only(client.respond(server.challenge(REALM, T0 + 1), "REGISTER", URI))
    assert creds_of(client.authorize("REGISTER", URI)[0]).nc == "00000002"
    client.forget(REALM)
    assert client.authorize("REGISTER", URI) == ()


def test_client_answers_each_proxy_realm():
    edge = DigestServer(SECRET)
    core = DigestServer(b"core proxy secret 32 octets long")
    values = edge.challenge("edge.example", T0, proxy=True) + core.challenge(
        "core.example", T0, proxy=True
    )
    decision = DigestClient("alice", "s3cret").respond(values, "INVITE", URI, proxy=True)
    assert isinstance(decision, RetryWith)
    assert sorted(a.realm for a in decision.authorizations) == ["core.example", "edge.example"]
    assert {a.header_name for a in decision.authorizations} == {"Proxy-Authorization"}
    table = HA1Table()
    table.add("alice", "edge.example", "s3cret")
    table.add("alice", "core.example", "s3cret")
    for authorization in decision.authorizations:
        server = edge if authorization.realm == "edge.example" else core
        assert server.verify(
            "INVITE", authorization.value, table, T0 + 1, request_uri=URI, proxy=True
        ).ok


def test_client_skips_malformed_and_unanswerable_challenges():
    client = DigestClient("u", "p")
    assert isinstance(client.respond(['Digest realm="r', "Basic abc=="], "INVITE", "sip:x"), GiveUp)
    assert isinstance(
        client.respond('Digest realm="r", nonce="n", qop="auth-conf"', "INVITE", "sip:x"), GiveUp
    )
    assert isinstance(  # -sess without a qop has no cnonce to use
        client.respond('Digest realm="r", nonce="n", algorithm=MD5-sess', "INVITE", "sip:x"), GiveUp
    )
    decision = client.respond(['Digest realm="r', 'Digest realm="r", nonce="n"'], "INVITE", "sip:x")
    assert creds_of(only(decision)).nonce == "n"


# ---------------------------------------------------------------------------------------------
# SIPp
# ---------------------------------------------------------------------------------------------


def sipp_style_authorization(
    challenge_value: str, username: str, password: str, method: str, uri: str, cnonce: str
) -> str:
    """An Authorization as SIPp writes one, computed here from the RFC 2617 formulas alone."""
    found = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge_value.split(" ", 1)[1]))
    realm, nonce = found["realm"], found["nonce"]
    ha1_ = md5_hex(f"{username}:{realm}:{password}")
    ha2_ = md5_hex(f"{method}:{uri}")
    response = md5_hex(f"{ha1_}:{nonce}:00000001:{cnonce}:auth:{ha2_}")
    return (
        f'Digest username="{username}",realm="{realm}",cnonce="{cnonce}",nc=00000001,qop=auth,'
        f'uri="{uri}",nonce="{nonce}",response="{response}",algorithm=MD5,opaque="{found["opaque"]}"'
    )


def test_sipp_style_md5_authorization_verifies():
    # The saghul INVITE->401->INVITE scenario gets [authentication username=test
    # password=test] from its injection file (see tests/data/auth/README.md).
    server = DigestServer(SECRET, algorithms=["MD5"])
    challenge = server.challenge(REALM, T0)[0]
    uri = "sip:service@127.0.0.1:5060"
    value = sipp_style_authorization(challenge, "test", "test", "INVITE", uri, "6b8b4567")
    table = HA1Table()
    table.add("test", REALM, "test")
    assert server.verify("INVITE", value, table, T0 + 1, request_uri=uri).ok
    wrong = sipp_style_authorization(challenge, "test", "nope", "INVITE", uri, "6b8b4567")
    assert not server.verify("INVITE", wrong, table, T0 + 1, request_uri=uri).ok


def _same_host_port(digest_uri: str, request_uri: str) -> bool:
    def host_port(uri: str) -> str:
        return uri.partition(":")[2].rpartition("@")[2].split(";")[0]

    return host_port(digest_uri) == host_port(request_uri)


@pytest.mark.parametrize("capture", SIPP_CAPTURES, ids=lambda c: c["name"])
def test_recorded_sipp_authorizations(capture):
    server = DigestServer(
        bytes.fromhex(capture["server_secret_hex"]), algorithms=capture["algorithms_offered"]
    )
    table = HA1Table()
    table.add(capture["username"], capture["realm"], capture["password"])
    now = capture["challenge_issued_at"] + 1
    sent = DigestCredentials.parse(capture["authorization"])
    # SIPp's response is the RFC formula over the uri it sent.
    expected = sipp_style_authorization(
        capture["challenge"][0],
        capture["username"],
        capture["password"],
        capture["method"],
        sent.uri,
        sent.cnonce,
    )
    assert DigestCredentials.parse(expected).response == sent.response
    result = server.verify(
        capture["method"], capture["authorization"], table, now, request_uri=capture["request_uri"]
    )
    if sent.uri == capture["request_uri"]:
        assert result.ok
    else:
        # SIPp without -auth_uri: uri is sip:<remote_ip>:<remote_port>.
        assert result.outcome is AuthOutcome.FAILED and "uri" in result.reason
        lenient = DigestServer(
            bytes.fromhex(capture["server_secret_hex"]),
            algorithms=capture["algorithms_offered"],
            uri_matches=_same_host_port,
        )
        assert lenient.verify(
            capture["method"],
            capture["authorization"],
            table,
            now,
            request_uri=capture["request_uri"],
        ).ok


class _Registrar:
    """A loopback UDP registrar answering REGISTER with a DigestServer, for one SIPp run."""

    def __init__(self, server: DigestServer, table: HA1Table) -> None:
        self.server = server
        self.table = table
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.results: list[AuthResult] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            head = data.decode("utf-8", "replace").split("\r\n\r\n")[0].split("\r\n")
            method, request_uri = head[0].split(" ")[:2]
            fields = [line.split(":", 1) for line in head[1:] if ":" in line]
            echoed = [
                f"{k}:{v}"
                for k, v in fields
                if k.strip().lower() in ("via", "from", "to", "call-id", "cseq")
            ]
            authorization = [v.strip() for k, v in fields if k.strip().lower() == "authorization"]
            extra = []
            if not authorization:
                status = "401 Unauthorized"
                extra = [f"WWW-Authenticate: {v}" for v in self.server.challenge("sipua", T0)]
            else:
                result = self.server.verify(
                    method, authorization[0], self.table, T0 + 1, request_uri=request_uri
                )
                self.results.append(result)
                status = "200 OK" if result.ok else "403 Forbidden"
            reply = "\r\n".join([f"SIP/2.0 {status}", *echoed, *extra, "Content-Length: 0", "", ""])
            self.sock.sendto(reply.encode(), peer)

    def __enter__(self) -> _Registrar:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.mark.peer
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
@pytest.mark.parametrize(("password", "succeeds"), [("test", True), ("wrong", False)])
def test_live_sipp_register(tmp_path, password, succeeds):
    # SIPp 3.6 reads only the first challenge and knows only MD5: offer MD5 first.
    server = DigestServer(SECRET, algorithms=["MD5", "SHA-256"])
    table = HA1Table()
    table.add("test", "sipua", "test")
    with _Registrar(server, table) as registrar:
        proc = subprocess.run(
            [
                "sipp",
                "-sf",
                str(DATA / "sipp_register_digest.xml"),
                "-s",
                "test",
                "-au",
                "test",
                "-ap",
                password,
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-p",
                "0",
                "-nostdin",
                "-timeout",
                "10s",
                "-timeout_error",
                f"127.0.0.1:{registrar.port}",
            ],
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
        )
    assert (proc.returncode == 0) is succeeds, proc.stdout[-2000:]
    assert len(registrar.results) == 1
    assert registrar.results[0].ok is succeeds
    assert registrar.results[0].algorithm == "MD5"
