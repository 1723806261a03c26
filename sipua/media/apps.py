"""Media applications: what a call's audio is connected to.

An application sees each call leg as a :class:`Participant`. The engine calls
its hooks from the event loop (they must not block):

- ``on_start(participant)`` when the stream starts;
- ``on_audio(participant, frame)`` every 20 ms with the participant's decoded
  audio (an :class:`~sipua.media.frame.AudioFrame` at ``sample_rate``), while
  we receive; concealed or comfort-noise frames fill gaps so the timeline is
  continuous;
- ``on_dtmf(participant, event)``, ``on_hold(participant, held)``,
  ``on_hangup(participant)``;
- ``on_tick(participant)`` every 20 ms, only if the application overrides it
  (e.g. to keep a playout queue filled).

It answers with ``participant.send_audio(pcm)``: 16-bit mono PCM at
``participant.sample_rate``, queued and clocked out by the engine's tick;
``participant.clear()`` drops what is queued (barge-in).

Two class attributes tell the engine what work to do: ``needs_audio = False``
skips decoding inbound audio; ``relay_rtp = True`` (the echo fast path)
returns inbound RTP payloads to the sender without decoding, re-packetised
with our SSRC, sequence numbers and timestamps.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .events import DtmfReceived
from .frame import AudioFrame

DEFAULT_SAMPLE_RATE = 16000


@runtime_checkable
class Participant(Protocol):
    """One call leg as an application sees it."""

    @property
    def id(self) -> str: ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def queued_ms(self) -> float: ...

    def send_audio(self, pcm: bytes) -> None: ...

    def clear(self) -> None: ...

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> asyncio.Future[None]: ...

    def stats(self) -> dict[str, Any]: ...


class MediaApp:
    """Base class with do-nothing hooks; override what you need."""

    name = "app"
    sample_rate = DEFAULT_SAMPLE_RATE
    needs_audio = True
    relay_rtp = False

    def on_start(self, participant: Participant) -> None:
        pass

    def on_audio(self, participant: Participant, frame: AudioFrame) -> None:
        pass

    def on_dtmf(self, participant: Participant, event: DtmfReceived) -> None:
        pass

    def on_hold(self, participant: Participant, held: bool) -> None:
        pass

    def on_hangup(self, participant: Participant) -> None:
        pass

    def on_tick(self, participant: Participant) -> None:
        pass


def overrides_on_tick(app: MediaApp) -> bool:
    return type(app).on_tick is not MediaApp.on_tick


class EchoApp(MediaApp):
    """Returns what each participant says to that participant.

    With ``fast_path`` (the default) RTP payloads are relayed as they arrive,
    without decoding; ``fast_path=False`` decodes and re-encodes every frame
    (useful to test the full audio path, or when a transform is added).
    """

    name = "echo"

    def __init__(self, *, fast_path: bool = True, sample_rate: int = DEFAULT_SAMPLE_RATE) -> None:
        self.fast_path = fast_path
        self.relay_rtp = fast_path
        self.needs_audio = not fast_path
        self.sample_rate = sample_rate

    def on_audio(self, participant: Participant, frame: AudioFrame) -> None:
        participant.send_audio(frame.pcm)


AppFactory = Callable[..., MediaApp]

_BUILTIN: dict[str, str] = {
    "echo": "sipua.media.apps:EchoApp",
    "record": "sipua.media.record:RecordApp",
    "play": "sipua.media.play:PlayApp",
    "conference": "sipua.media.conference:ConferenceApp",
}
_registry: dict[str, AppFactory] = {}


def register_app(name: str, factory: AppFactory) -> None:
    """Make ``get_app(name, **options)`` call ``factory(**options)``."""
    _registry[name] = factory


def app_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_registry))


def get_app(name: str, **options: Any) -> MediaApp:
    """A new application instance, e.g. ``get_app("record", directory="/tmp/rec")``."""
    factory = _registry.get(name)
    if factory is None:
        target = _BUILTIN.get(name)
        if target is None:
            raise KeyError(f"unknown media application {name!r}; known: {', '.join(app_names())}")
        module_name, _, attr = target.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        _registry[name] = factory
    return factory(**options)
