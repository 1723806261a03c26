"""``sipua serve`` behind a real SIP proxy: Kamailio (Debian package) relaying to it.

This is how sipua runs at scale (docs: a Kamailio dispatcher in front of several nodes), and
how carriers' SBCs reach it: the proxy Record-Routes, so every in-dialog request, ours
included, must go back through it (RFC 3261 §12.2.1.1 loose routing, §16.12). SIPp's
built-in uac calls through Kamailio; baresip calls through it and is hung up by sipua, whose
BYE must reach baresip through the proxy.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .baresip import Baresip, BaresipConfig, free_port, media_env, wait_events
from .conftest import assert_clean_stderr
from .service import Service, require_tool, run_sipp, start_service
from .sipclient import SipClient

pytestmark = pytest.mark.peer

MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
# One UDP worker: with several, Kamailio may relay sipua's 200 before the 180 sent just
# before it, and SIPp's built-in uac aborts on a 1xx after the 2xx (a UAC should ignore it).
children=1
tcp_children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "pv.so"
loadmodule "xlog.so"
modparam("rr", "enable_full_lr", 1)
request_route {{
    xlog("L_NOTICE", "relay $rm $ru from $si:$sp\\n");
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        # A caller that ignores Record-Route (SIPp's built-in uac) sends its ACK and BYE to
        # the proxy without Route: they belong to sipua's dialogs all the same.
        $du = "sip:127.0.0.1:{target}";
        t_relay(); exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    $du = "sip:127.0.0.1:{target}";
    t_relay();
}}
"""


class Kamailio:
    def __init__(self, directory: Path, target_port: int) -> None:
        self.binary = require_tool("kamailio")
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "kamailio.cfg"
        self.config.write_text(CONFIG.format(port=self.port, modules=MODULES, target=target_port))
        self.log_path = directory / "kamailio.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-DD", "-E", "-f", str(self.config), "-m", "32", "-M", "4"]
                + ["-P", str(directory / "kamailio.pid"), "-Y", str(directory)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 15.0) -> None:
        """Until an OPTIONS through the proxy is answered (by sipua: Kamailio relays it)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log()[-3000:]
            try:
                with SipClient("udp", ("127.0.0.1", self.port)) as client:
                    ping = client.new_call(f"sip:ping@127.0.0.1:{self.port}")
                    client.send(ping.in_dialog("OPTIONS"))  # no To tag yet: out of dialog
                    if client.final_response("OPTIONS", timeout=0.5).status == 200:
                        return
            except TimeoutError:
                pass
            assert time.monotonic() < deadline, self.log()[-3000:]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Kamailio]]:
    base = tmp_path_factory.mktemp("kamailio")
    svc = start_service(base / "data", env=media_env())
    try:
        proxy = Kamailio(base / "proxy", svc.ports["udp"])
        try:
            yield svc, proxy
        finally:
            proxy.stop()
    finally:
        svc.stop()
    assert_clean_stderr(svc)


def test_sipp_calls_through_kamailio(
    behind_proxy: tuple[Service, Kamailio], tmp_path: Path
) -> None:
    svc, proxy = behind_proxy
    session = svc.create_session(provider={"type": "sip", "transport": "udp"})
    calls = 50
    result = run_sipp(
        f"127.0.0.1:{proxy.port}",
        *("-sn", "uac", "-s", f"session_{session['id']}", "-m", str(calls)),
        *("-r", "50", "-d", "200", "-trace_err"),
        timeout=60,
        cwd=tmp_path,
    )
    errors = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_errors.log"))
    assert (result.successful, result.failed) == (calls, 0), errors[-4000:] or result.output[-3000:]
    relayed = proxy.log()
    # The in-dialog requests went through the proxy too.
    assert len(re.findall(r"relay ACK sip:", relayed)) >= calls, relayed[-2000:]
    assert len(re.findall(r"relay BYE sip:", relayed)) >= calls, relayed[-2000:]


def test_our_bye_goes_back_through_the_proxy(
    behind_proxy: tuple[Service, Kamailio], tmp_path: Path
) -> None:
    svc, proxy = behind_proxy
    session = svc.create_session(provider={"type": "sip", "transport": "udp"})
    with Baresip(tmp_path / "baresip", BaresipConfig(codec_modules=("g711",))) as phone:
        established = phone.dial(f"sip:session_{session['id']}@127.0.0.1:{proxy.port}")
        assert established["type"] == "CALL_ESTABLISHED", phone.control.events
        ended = svc.client().post(f"/v1/sessions/{session['id']}/end")
        assert ended.status_code == 200
        closed = phone.control.wait_event("CALL_CLOSED", timeout=10)
        assert closed["type"] == "CALL_CLOSED"
        trace = phone.log()
    # sipua's 200 OK carried the proxy's Record-Route back to the caller…
    assert re.search(rf"Record-Route: <sip:127\.0\.0\.1:{proxy.port};lr", trace), trace[-4000:]
    # …and sipua's BYE came to baresip from the proxy: its top Via is Kamailio's.
    bye = re.search(r"BYE sip:[^\n]*\n(?:[^\n]+\n)*?Via: SIP/2\.0/UDP ([^;\s]+)", trace)
    assert bye is not None, trace[-4000:]
    assert bye.group(1) == f"127.0.0.1:{proxy.port}", bye.group(0)
    sent_by_sipua = (
        rf"relay BYE sip:tester[^@\s]*@127\.0\.0\.1:\d+ from 127\.0\.0\.1:{svc.ports['udp']}"
    )
    assert re.search(sent_by_sipua, proxy.log()), proxy.log()[-2000:]
    [gone] = wait_events(svc, session["id"], "session.provider.disconnected")
    assert gone["data"]["reason"] == "session-ended"
