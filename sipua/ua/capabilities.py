"""What sipua's user agent implements, as it tells peers (Allow, Accept, Supported)."""

from __future__ import annotations

# NOTIFY: for the refer subscriptions of our transfers. REFERs sent to us get 405.
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"
ACCEPT = "application/sdp, application/dtmf-relay, application/dtmf, message/sipfrag"
OPTION_TAGS: frozenset[str] = frozenset()  # we implement no SIP extension that can be Required
IN_DIALOG_ONLY = frozenset({"BYE", "INFO", "UPDATE", "PRACK", "NOTIFY", "REFER"})
