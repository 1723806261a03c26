"""The ``conference`` application: every participant of a session hears all the others.

One :class:`ConferenceMixer` per conference (the session id), kept in a module registry: the
first participant to start creates it, the last to hang up removes it. Each participant gets
its own :class:`ConferenceApp` instance (``app_for_session`` makes one per leg), bound to the
mixer by the conference id, so SIP legs and WebSocket stream participants of one session meet
in the same mixer.

Timing. Every participant's stream calls ``on_audio`` and then ``on_tick`` on the one shared
20 ms clock, but an application is not told which tick it is. A mixing *round* therefore
starts when a participant that was already served in the current round ticks again: the
first ``on_tick`` of every clock tick. The round takes one frame from each participant's
queue and sums them in int32; each participant is then sent that sum minus its own frame
(the N-1 mix, so nobody hears themselves). Several loud talkers can sum past int16: a
limiter per listener then scales the mix down to :data:`LIMIT` at once (attack within the
frame that would clip) and gives the gain back over about 200 ms (:data:`RELEASE_PER_FRAME`,
ramped inside each frame, so neither edge clicks); only a peak the limiter cannot catch is
clipped, never wrapped.

Jitter. SIP legs deliver exactly one frame per tick (their jitter buffer and concealment fill
gaps), but WebSocket streams deliver frames as messages arrive, a late one and then two at
once. So a participant's frames wait in a small queue (:data:`QUEUE_FRAMES`), and it is mixed
only once :data:`PREBUFFER_FRAMES` are queued: one late frame then leaves the queue one frame
shorter instead of making a gap. A queue that runs dry (loss, hold, a talker that stopped)
contributes silence and primes again; a full one drops its oldest frame, so memory and added
latency stay bounded (60 ms at most).

Sample rate. The stream layer decodes every participant's audio to its application's
``sample_rate`` (SIP codecs and WebSocket wire formats are resampled with PyAV there) and
``app_for_session`` creates every conference app at the default 16 kHz, so all participants
of a session share one rate and the mixer never resamples. An app created while its
conference exists takes the mixer's rate; a participant that still arrives at another rate
(a custom app made with an explicit different rate) is refused with ``ValueError``.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np

from .apps import DEFAULT_SAMPLE_RATE, MediaApp, Participant
from .frame import AudioFrame

__all__ = [
    "MAX_BACKLOG_MS",
    "PREBUFFER_FRAMES",
    "QUEUE_FRAMES",
    "ConferenceApp",
    "ConferenceMixer",
    "conference_ids",
    "mixer_for",
]

log = logging.getLogger(__name__)

QUEUE_FRAMES = 3  # frames held per participant: one of jitter, and at most 60 ms of delay
PREBUFFER_FRAMES = 2  # frames queued before a participant is mixed (again)
# Audio already waiting toward a participant beyond which a round's mix is dropped for it: a
# participant that stops taking audio (not sending) must not make its queue grow for minutes.
MAX_BACKLOG_MS = 100.0

_INT16_MIN, _INT16_MAX = -32768, 32767
LIMIT = 32000  # the limiter's ceiling, about -0.2 dBFS
RELEASE_PER_FRAME = 0.05  # gain regained per 20 ms frame once the mix is quieter again


class _Member:
    """One participant's place in the mixer: its inbound queue and counters."""

    __slots__ = (
        "participant",
        "queue",
        "primed",
        "held",
        "overflows",
        "underruns",
        "backlog",
        "gain",
        "limited",
    )

    def __init__(self, participant: Participant) -> None:
        self.participant = participant
        self.queue: deque[np.ndarray] = deque()
        self.primed = False
        self.held = False
        self.overflows = 0  # frames dropped because the queue was full
        self.underruns = 0  # rounds the queue was empty while playing
        self.backlog = 0  # mixes not sent because the participant was not taking audio
        self.gain = 1.0  # the limiter's gain on the mix this participant hears
        self.limited = 0  # frames the limiter turned down

    def take(self, silence: np.ndarray) -> np.ndarray:
        """This round's frame: the oldest queued one, or silence while (re)priming."""
        queue = self.queue
        if not self.primed:
            if len(queue) < PREBUFFER_FRAMES:
                return silence
            self.primed = True
        if queue:
            return queue.popleft()
        self.primed = False
        self.underruns += 1
        return silence


class ConferenceMixer:
    """Mixes one conference: N-1 mixes of 20 ms int16 frames at one ``sample_rate``."""

    def __init__(self, conference_id: str, sample_rate: int = DEFAULT_SAMPLE_RATE) -> None:
        self.conference_id = conference_id
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate // 50
        self._silence = np.zeros(self.frame_samples, dtype=np.int16)
        # Keyed by id(): a Participant need not be hashable, and the member holds it alive.
        self._members: dict[int, _Member] = {}
        self._served: set[int] = set()
        self._rows: dict[int, int] = {}  # participant -> its row in this round's frames
        self._frames = np.zeros((0, self.frame_samples), dtype=np.int32)
        self._total: np.ndarray | None = None
        self.rounds = 0

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, participant: Participant) -> bool:
        return id(participant) in self._members

    # -- membership ---------------------------------------------------------------------------

    def join(self, participant: Participant) -> None:
        if participant.sample_rate != self.sample_rate:
            raise ValueError(
                f"participant {participant.id} is at {participant.sample_rate} Hz; conference "
                f"{self.conference_id} mixes at {self.sample_rate} Hz"
            )
        self._members.setdefault(id(participant), _Member(participant))

    def leave(self, participant: Participant) -> None:
        key = id(participant)
        self._members.pop(key, None)
        self._served.discard(key)

    def hold(self, participant: Participant, held: bool) -> None:
        """A held participant neither contributes (no music on hold into the room) nor hears.

        Nothing is queued toward it either: a SIP leg on hold sends nothing, so whatever we
        queued would come out, stale, when it resumes.
        """
        member = self._members.get(id(participant))
        if member is None:
            return
        member.held = held
        member.queue.clear()
        member.primed = False

    # -- audio --------------------------------------------------------------------------------

    def push(self, participant: Participant, pcm: bytes) -> None:
        """One 20 ms frame the participant said."""
        member = self._members.get(id(participant))
        if member is None or member.held:
            return
        samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
        n = self.frame_samples
        if samples.size != n:  # not a stream's 20 ms frame: fit it rather than skew the mix
            samples = np.pad(samples[:n], (0, max(0, n - samples.size)))
        if len(member.queue) >= QUEUE_FRAMES:
            member.queue.popleft()
            member.overflows += 1
        member.queue.append(samples)

    def tick(self, participant: Participant) -> None:
        """Send ``participant`` this round's mix of everyone else (a new round if it is due)."""
        key = id(participant)
        member = self._members.get(key)
        if member is None:
            return
        if self._total is None or key in self._served:
            self._mix()
        self._served.add(key)
        if member.held:
            return
        if participant.queued_ms >= MAX_BACKLOG_MS:
            member.backlog += 1
            return
        assert self._total is not None
        row = self._rows.get(key)
        mix = self._total if row is None else self._total - self._frames[row]
        mix = _limit(member, mix)
        participant.send_audio(np.clip(mix, _INT16_MIN, _INT16_MAX).astype("<i2").tobytes())

    def _mix(self) -> None:
        self.rounds += 1
        self._served.clear()
        members = self._members
        self._rows = {key: row for row, key in enumerate(members)}
        if members:
            silence = self._silence
            self._frames = np.stack([m.take(silence) for m in members.values()]).astype(np.int32)
            self._total = self._frames.sum(axis=0, dtype=np.int32)
        else:
            self._frames = np.zeros((0, self.frame_samples), dtype=np.int32)
            self._total = np.zeros(self.frame_samples, dtype=np.int32)

    def stats(self) -> dict[str, Any]:
        return {
            "conference_id": self.conference_id,
            "sample_rate": self.sample_rate,
            "participants": len(self._members),
            "rounds": self.rounds,
            "members": {
                m.participant.id: {
                    "queued_frames": len(m.queue),
                    "held": m.held,
                    "overflows": m.overflows,
                    "underruns": m.underruns,
                    "backlog_drops": m.backlog,
                    "limited_frames": m.limited,
                }
                for m in self._members.values()
            },
        }


_mixers: dict[str, ConferenceMixer] = {}


def mixer_for(conference_id: str) -> ConferenceMixer | None:
    """The live mixer of ``conference_id``, if any participant is in it."""
    return _mixers.get(conference_id)


def conference_ids() -> list[str]:
    return sorted(_mixers)


def _join(conference_id: str, participant: Participant) -> ConferenceMixer:
    mixer = _mixers.get(conference_id)
    if mixer is None:
        # Created here, not when the app is: an app whose stream never starts (a refused
        # INVITE) never hangs up either, and must not leave a mixer behind.
        mixer = ConferenceMixer(conference_id, participant.sample_rate)
        _mixers[conference_id] = mixer
    mixer.join(participant)
    return mixer


def _leave(mixer: ConferenceMixer, participant: Participant) -> None:
    mixer.leave(participant)
    if not len(mixer) and _mixers.get(mixer.conference_id) is mixer:
        del _mixers[mixer.conference_id]


class ConferenceApp(MediaApp):
    """One participant's (or several participants') way into conference ``session_id``.

    DTMF is not mixed: RFC 4733 events and SIP INFO never reach the audio path (they stay
    ``session.dtmf`` events); only in-band tones, being audio, are heard by the others.
    """

    name = "conference"

    def __init__(self, session_id: str, *, sample_rate: int = DEFAULT_SAMPLE_RATE) -> None:
        self.session_id = session_id
        existing = _mixers.get(session_id)
        # The stream decodes to this rate, so taking the live mixer's keeps the room at one rate.
        self.sample_rate = existing.sample_rate if existing is not None else sample_rate
        self._mixers: dict[int, ConferenceMixer] = {}

    def on_start(self, participant: Participant) -> None:
        self._mixers[id(participant)] = _join(self.session_id, participant)

    def on_audio(self, participant: Participant, frame: AudioFrame) -> None:
        mixer = self._mixers.get(id(participant))
        if mixer is not None:
            mixer.push(participant, frame.pcm)

    def on_tick(self, participant: Participant) -> None:
        mixer = self._mixers.get(id(participant))
        if mixer is not None:
            mixer.tick(participant)

    def on_hold(self, participant: Participant, held: bool) -> None:
        mixer = self._mixers.get(id(participant))
        if mixer is not None:
            mixer.hold(participant, held)

    def on_hangup(self, participant: Participant) -> None:
        mixer = self._mixers.pop(id(participant), None)
        if mixer is not None:
            _leave(mixer, participant)


def _limit(member: _Member, mix: np.ndarray) -> np.ndarray:
    """The mix with ``member``'s limiter applied: down at once, back up slowly, no steps."""
    peak = int(np.abs(mix).max()) if mix.size else 0
    wanted = 1.0 if peak <= LIMIT else LIMIT / peak
    previous = member.gain
    if wanted < previous:
        gain = wanted  # attack: this very frame must not clip
        member.limited += 1
        member.gain = gain
        return np.rint(mix * gain)
    gain = min(wanted, previous + RELEASE_PER_FRAME)
    member.gain = gain
    if previous >= 1.0 and gain >= 1.0:
        return mix
    # Release: ramp from the last frame's gain to this one's across the frame.
    return np.rint(mix * np.linspace(previous, gain, mix.size, endpoint=False))
