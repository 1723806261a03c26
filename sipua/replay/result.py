"""What a replay reports: responses, the answer's media, RTP counts, BYE status."""

from __future__ import annotations

from dataclasses import dataclass, field

from .common import (
    EXIT_FAILED,
    EXIT_OK,
)
from .invite import (
    AnswerMedia,
    hostport,
)

# -- the result ----------------------------------------------------------------------------


@dataclass
class ReplayResult:
    capture: str
    invite_frame: int
    caller: str
    target: str
    transport: str
    request_uri: str
    call_id: str = ""
    responses: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    final_status: int | None = None
    answer: AnswerMedia | None = None
    captured_answer: AnswerMedia | None = None  # what the UAS of the captured call chose
    media: str = "RTP"
    rtp_captured: int = 0
    rtp_sent: int = 0
    rtp_received: int = 0
    rtcp_received: int = 0
    bye_status: int | None = None
    hung_up_by: str | None = None  # "us" or "remote"
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return self.final_status is not None and 200 <= self.final_status < 300

    @property
    def exit_code(self) -> int:
        hung_up = (self.bye_status is not None and 200 <= self.bye_status < 300) or (
            self.hung_up_by == "remote"
        )
        return EXIT_OK if self.answered and hung_up and self.error is None else EXIT_FAILED

    def as_dict(self) -> dict[str, object]:
        answer, captured = self.answer, self.captured_answer
        return {
            "capture": self.capture,
            "invite_frame": self.invite_frame,
            "caller": self.caller,
            "target": self.target,
            "transport": self.transport,
            "request_uri": self.request_uri,
            "call_id": self.call_id,
            "responses": self.responses,
            "final_status": self.final_status,
            "answered": self.answered,
            "answer_codec": answer.codec if answer else None,
            "answer_payload_type": answer.payload_type if answer else None,
            "answer_rtp": hostport(*answer.target) if answer and answer.target else None,
            "answer_crypto": answer.crypto if answer else None,
            "captured_answer_codec": captured.codec if captured else None,
            "captured_answer_crypto": captured.crypto if captured else None,
            "media": self.media,
            "rtp_captured": self.rtp_captured,
            "rtp_sent": self.rtp_sent,
            "rtp_received": self.rtp_received,
            "rtcp_received": self.rtcp_received,
            "bye_status": self.bye_status,
            "hung_up_by": self.hung_up_by,
            "error": self.error,
            "notes": self.notes,
            "exit_code": self.exit_code,
        }

    def text(self) -> list[str]:
        seen = ", ".join(
            f"{s} {r}".rstrip() for s, r in zip(self.responses, self.reasons, strict=True)
        )
        lines = [
            f"replayed: INVITE of frame {self.invite_frame} in {self.capture} "
            f"(caller {self.caller})",
            f"target: {self.target} over {self.transport.upper()}, {self.request_uri}",
            f"responses: {seen or 'none'}",
        ]
        if self.answer is not None:
            lines.append(f"answer: {self.answer.describe()}")
        if self.captured_answer is not None:
            lines.append(f"captured call's answer: {self.captured_answer.describe()}")
        if self.answered:
            lines.append(
                f"media: {self.media}: {self.rtp_sent} packets sent of {self.rtp_captured} "
                f"captured, {self.rtp_received} RTP and {self.rtcp_received} RTCP received"
            )
            if self.hung_up_by == "remote":
                lines.append("BYE: sent by the UAS, answered 200")
            else:
                lines.append(f"BYE: {self.bye_status if self.bye_status else 'no response'}")
        lines += [f"note: {n}" for n in self.notes]
        if self.error:
            lines.append(f"error: {self.error}")
        verdict = "answered and hung up" if self.exit_code == EXIT_OK else "failed"
        lines.append(f"result: {verdict} (exit {self.exit_code})")
        return lines
