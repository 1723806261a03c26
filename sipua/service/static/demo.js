// sipua browser stream demo (docs/STREAMS.md, "Browser").
//
// Opens <stream url>?token=<stream token>, sends the microphone as binary 16-bit little-endian
// PCM at 16 kHz in 20 ms frames, plays the binary PCM that comes back, and speaks the JSON
// control protocol: ready / clear / mark / dtmf / ended from the server, dtmf / hangup to it.
// Counters are shown on the page (and in window.sipuaDemo) so a test can read them.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    ws: null,
    context: null,
    media: null,
    node: null,
    fallback: null,
    sent: 0,
    received: 0,
    played: 0,
    level: 0,
    status: "idle",
    participant: null,
    ended: null,
  };
  window.sipuaDemo = state;

  function log(text) {
    const line = `${new Date().toISOString().slice(11, 23)} ${text}\n`;
    const el = $("log");
    el.textContent = (line + el.textContent).slice(0, 8000);
  }

  function show() {
    $("status").textContent = state.status;
    $("participant").textContent = state.participant || "–";
    $("sent-frames").textContent = String(state.sent);
    $("received-frames").textContent = String(state.received);
    $("played-frames").textContent = String(state.played);
    $("mic-level").textContent = state.level.toFixed(4);
  }

  function setStatus(status) {
    state.status = status;
    show();
  }

  // #url=…&token=…[&autostart=1] fills the form (a fragment never reaches the server).
  function fromFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.get("url")) $("url").value = params.get("url");
    if (params.get("token")) $("token").value = params.get("token");
    return params.get("autostart") === "1";
  }

  function streamUrl() {
    const url = new URL($("url").value.trim(), location.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    url.searchParams.set("token", $("token").value.trim());
    return url.toString();
  }

  function sendFrame(frame, level) {
    state.level = level;
    const ws = state.ws;
    if (ws && ws.readyState === WebSocket.OPEN && state.participant) {
      ws.send(frame.buffer);
      state.sent++;
    }
  }

  function play(buffer) {
    state.received++;
    if (state.node) {
      state.node.port.postMessage({ type: "play", pcm: buffer }, [buffer]);
    } else if (state.fallback) {
      state.fallback.player.enqueue(new Int16Array(buffer));
    }
  }

  function clearPlayback() {
    if (state.node) state.node.port.postMessage({ type: "clear" });
    else if (state.fallback) state.fallback.player.clear();
  }

  async function startAudio() {
    const context = new AudioContext();
    state.context = context;
    state.media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    const source = context.createMediaStreamSource(state.media);
    if (context.audioWorklet && typeof AudioWorkletNode === "function") {
      await context.audioWorklet.addModule("demo/pcm-worklet.js");
      const node = new AudioWorkletNode(context, "sipua-pcm", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
      });
      node.port.onmessage = (event) => {
        const data = event.data;
        if (data.type === "frame") sendFrame(data.frame, data.level);
        else if (data.type === "played") state.played = data.frames;
      };
      source.connect(node);
      node.connect(context.destination);
      state.node = node;
      $("audio-path").textContent = `AudioWorklet, ${context.sampleRate} Hz`;
    } else {
      // Not a secure context (plain http on a remote host): ScriptProcessor, same classes.
      await new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = "demo/pcm-worklet.js";
        script.onload = resolve;
        script.onerror = reject;
        document.head.appendChild(script);
      });
      const { Downsampler, Player, FRAME_SAMPLES } = window.SipuaPcm;
      const processor = context.createScriptProcessor(1024, 1, 1);
      const down = new Downsampler(context.sampleRate, sendFrame);
      const player = new Player(context.sampleRate, 10);
      processor.onaudioprocess = (event) => {
        down.push(event.inputBuffer.getChannelData(0));
        player.render(event.outputBuffer.getChannelData(0));
        state.played = Math.floor(player.played / FRAME_SAMPLES);
      };
      source.connect(processor);
      processor.connect(context.destination);
      state.fallback = { processor, player };
      $("audio-path").textContent = `ScriptProcessor, ${context.sampleRate} Hz`;
    }
    if (context.state === "suspended") await context.resume();
  }

  function stopAudio() {
    if (state.media) state.media.getTracks().forEach((t) => t.stop());
    if (state.context) state.context.close();
    state.media = state.context = state.node = state.fallback = null;
  }

  function onControl(message) {
    switch (message.type) {
      case "ready":
        state.participant = message.participant_id;
        setStatus("streaming");
        log(`ready: ${message.participant_id}, ${message.encoding} ${message.sample_rate} Hz`);
        break;
      case "clear":
        clearPlayback();
        log("clear (barge-in)");
        break;
      case "dtmf":
        log(`dtmf from the session: ${message.digit}`);
        break;
      case "mark":
        log(`mark ${message.name}`);
        break;
      case "ended":
        state.ended = message.reason;
        log(`ended: ${message.reason}`);
        break;
      default:
        log(`server: ${JSON.stringify(message)}`);
    }
  }

  async function start() {
    if (state.ws) return;
    $("start").disabled = true;
    $("stop").disabled = false;
    state.sent = state.received = state.played = 0;
    state.ended = null;
    setStatus("starting microphone");
    try {
      await startAudio();
    } catch (error) {
      log(`microphone: ${error}`);
      setStatus("no microphone");
      $("start").disabled = false;
      $("stop").disabled = true;
      return;
    }
    setStatus("connecting");
    const ws = new WebSocket(streamUrl());
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        try {
          onControl(JSON.parse(event.data));
        } catch (error) {
          log(`bad control message: ${error}`);
        }
      } else {
        play(event.data);
      }
    };
    ws.onclose = (event) => {
      log(`closed: ${event.code} ${event.reason}`);
      setStatus(`closed ${event.code} ${event.reason || ""}`.trim());
      state.ws = null;
      state.participant = null;
      stopAudio();
      $("start").disabled = false;
      $("stop").disabled = true;
    };
    ws.onerror = () => log("websocket error");
  }

  function hangUp() {
    const ws = state.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "hangup" }));
    else stopAudio();
  }

  function sendDigit(digit) {
    const ws = state.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "dtmf", digit }));
      log(`dtmf ${digit}`);
    }
  }

  $("connect").addEventListener("submit", (event) => {
    event.preventDefault();
    start();
  });
  $("stop").addEventListener("click", hangUp);
  document.querySelectorAll("#keypad button").forEach((button) => {
    button.addEventListener("click", () => sendDigit(button.dataset.digit));
  });
  setInterval(show, 200);
  window.addEventListener("hashchange", fromFragment);
  if (fromFragment()) start();
})();
