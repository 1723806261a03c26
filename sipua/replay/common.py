"""What every part of ``sipua replay`` shares: exit codes, timers, header rules."""

from __future__ import annotations

import socket

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

T1 = 0.5  # RFC 3261 §17.1.1.1
TIMER_B = 64 * T1
CANCEL_WAIT = 5.0  # for the 487 after our CANCEL; a UAS that sends none is reported, not awaited
DRAIN_SECONDS = 0.5  # echoes of the last packets still on their way when the schedule ends
DEFAULT_MAX_SECONDS = 30.0

# Headers of the captured INVITE that name the captured network, the captured dialog or
# the captured credentials. They are written anew, or left out (Authorization: a nonce of
# another server; Replaces/Join: a dialog that does not exist here).
_NOT_CARRIED = frozenset(
    [
        "via",
        "route",
        "record-route",
        "contact",
        "authorization",
        "proxy-authorization",
        "from",
        "to",
        "call-id",
        "cseq",
        "max-forwards",
        "content-type",
        "content-length",
        "content-encoding",
        "replaces",
        "join",
    ]
)
# ICE names the caller's captured candidates: an ICE UAS would check them and fail.
_ICE_ATTRIBUTES = frozenset(
    [
        "candidate",
        "remote-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "ice-mismatch",
        "end-of-candidates",
    ]
)
# RFC 5761 §4: with RTP and RTCP on one port, a second octet of 192-223 is RTCP
# (SR 200, RR 201, SDES 202, BYE 203, APP 204, and the feedback and XR types).
_RTCP_TYPES = range(192, 224)
# Linux's IP_RECVERR (<linux/in.h>); Python's socket module does not name it.
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)


class ReplayUsageError(Exception):
    """The capture or the options cannot give a call to replay (exit status 2)."""
