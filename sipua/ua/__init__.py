"""The user agent: the asyncio driver of the sans-I/O SIP core, and call control."""
