"""TwiML (Twilio) and TeXML (Telnyx) documents that connect a call to a session's media stream.

A customer's voice webhook answers Twilio or Telnyx with one of these, and the provider opens a
WebSocket to ``stream.url`` carrying the call's audio:

- Twilio ``<Connect><Stream>`` is bidirectional. Twilio does not allow a query string in the
  stream URL, so the session's stream token travels as ``<Parameter name="token">``; Twilio puts
  custom parameters in the ``start`` message's ``customParameters``.
- Telnyx TeXML accepts the same ``<Connect><Stream>`` with ``<Parameter>`` (delivered in the
  ``start`` message). Its stream is bidirectional for raw audio only with
  ``bidirectionalMode="rtp"`` (the default, ``mp3``, plays back MP3 files), and
  ``bidirectionalCodec`` picks the codec of the audio sent back (PCMU at 8 kHz here, what the
  stream endpoint speaks).

Both need a ``wss://`` URL reachable from the internet: set ``http.public_url`` to the
``https://`` address of the TLS proxy in front of sipua.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

__all__ = ["TWIML_CONTENT_TYPE", "texml_connect_stream", "twiml_connect_stream"]

TWIML_CONTENT_TYPE = "application/xml; charset=utf-8"
_PROLOG = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _attr(value: str) -> str:
    # quoteattr escapes &, <, > and picks the quote; we always want double quotes, so escape
    # '"' as well, plus the whitespace characters an XML parser would normalise away.
    return quoteattr(value, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def _check(value: str, what: str) -> str:
    # Control characters other than tab/CR/LF cannot appear in XML 1.0 at all, even escaped.
    for ch in value:
        if ord(ch) < 0x20 and ch not in "\t\r\n":
            raise ValueError(f"{what} contains a control character")
    return value


def _stream(url: str, token: str, params: dict[str, str], extra_attrs: dict[str, str]) -> str:
    attrs = " ".join(
        f"{name}={_attr(_check(value, name))}"
        for name, value in {"url": url, **extra_attrs}.items()
    )
    lines = [f"    <Stream {attrs}>"]
    for name, value in {"token": token, **params}.items():
        lines.append(
            f"      <Parameter name={_attr(_check(name, 'parameter name'))} "
            f"value={_attr(_check(value, name))}/>"
        )
    lines.append("    </Stream>")
    return "\n".join(lines)


def _document(stream: str) -> str:
    return f"{_PROLOG}<Response>\n  <Connect>\n{stream}\n  </Connect>\n</Response>\n"


def twiml_connect_stream(
    stream_url: str, token: str, parameters: dict[str, str] | None = None
) -> str:
    """``<Response><Connect><Stream url=…><Parameter name="token" …/></Stream></Connect></Response>``."""
    if "?" in stream_url:
        raise ValueError("Twilio stream URLs may not carry a query string")
    return _document(_stream(stream_url, token, dict(parameters or {}), {}))


def texml_connect_stream(
    stream_url: str,
    token: str,
    parameters: dict[str, str] | None = None,
    *,
    codec: str = "PCMU",
    sampling_rate: int = 8000,
) -> str:
    """The TeXML equivalent, with bidirectional RTP streaming in ``codec`` at ``sampling_rate``."""
    extra = {
        "bidirectionalMode": "rtp",
        "bidirectionalCodec": codec,
        "bidirectionalSamplingRate": str(sampling_rate),
    }
    return _document(_stream(stream_url, token, dict(parameters or {}), extra))
