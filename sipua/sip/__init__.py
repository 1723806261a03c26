"""Sans-I/O SIP core: messages, framing, transactions, dialogs, auth, SDP.

Nothing in this package imports asyncio, sockets or a clock; time comes in as a
``now`` argument and everything to send comes out as values.
"""
