"""sipua: an open-source SIP edge for real-time voice sessions."""

__version__ = "0.1.0"
