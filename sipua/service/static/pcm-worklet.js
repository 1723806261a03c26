// sipua demo: microphone capture at 16 kHz and playback of 16 kHz PCM.
//
// Loaded as an AudioWorklet module ("sipua-pcm" processor) and, where AudioWorklet is not
// available (pages not served from a secure context), as a plain script whose classes the
// ScriptProcessor fallback in demo.js uses. No build step, no dependencies.
"use strict";

const STREAM_RATE = 16000; // what the browser stream protocol carries
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz

// Context rate -> 16 kHz: each output sample is the mean of the input samples in its
// interval (a box low-pass; enough for speech) so 48 kHz and 44.1 kHz both work.
class Downsampler {
  constructor(inputRate, onFrame) {
    this.step = inputRate / STREAM_RATE;
    this.onFrame = onFrame;
    this.acc = 0;
    this.count = 0;
    this.t = 0;
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.fill = 0;
    this.energy = 0;
  }

  push(input) {
    for (let i = 0; i < input.length; i++) {
      this.acc += input[i];
      this.count++;
      this.t += 1;
      if (this.t >= this.step) {
        this.t -= this.step;
        const v = Math.max(-1, Math.min(1, this.acc / this.count));
        this.acc = 0;
        this.count = 0;
        this.frame[this.fill++] = v < 0 ? v * 0x8000 : v * 0x7fff;
        this.energy += v * v;
        if (this.fill === FRAME_SAMPLES) {
          const level = Math.sqrt(this.energy / FRAME_SAMPLES);
          this.onFrame(this.frame, level);
          this.frame = new Int16Array(FRAME_SAMPLES);
          this.fill = 0;
          this.energy = 0;
        }
      }
    }
  }
}

// 16 kHz PCM queued from the network -> the context rate (linear interpolation).
class Player {
  constructor(outputRate, maxSeconds) {
    this.step = STREAM_RATE / outputRate;
    this.chunks = [];
    this.offset = 0; // read position in chunks[0]
    this.queued = 0;
    this.a = 0;
    this.b = 0;
    this.pos = 0;
    this.limit = STREAM_RATE * (maxSeconds || 10);
    this.played = 0; // 16 kHz samples played out of the queue
  }

  enqueue(int16) {
    const f = new Float32Array(int16.length);
    for (let i = 0; i < int16.length; i++) f[i] = int16[i] / 0x8000;
    this.chunks.push(f);
    this.queued += f.length;
    while (this.queued > this.limit && this.chunks.length > 1) {
      const dropped = this.chunks.shift();
      this.queued -= dropped.length - this.offset;
      this.offset = 0;
    }
  }

  clear() {
    this.chunks = [];
    this.offset = 0;
    this.queued = 0;
  }

  next() {
    while (this.chunks.length && this.offset >= this.chunks[0].length) {
      this.offset -= this.chunks[0].length;
      this.chunks.shift();
    }
    if (!this.chunks.length) return null;
    const v = this.chunks[0][this.offset];
    this.offset++;
    this.queued--;
    this.played++;
    return v;
  }

  render(output) {
    // Between samples a and b of the 16 kHz stream, at fraction pos.
    for (let i = 0; i < output.length; i++) {
      output[i] = this.a + (this.b - this.a) * this.pos;
      this.pos += this.step;
      while (this.pos >= 1) {
        this.pos -= 1;
        this.a = this.b;
        const v = this.next();
        this.b = v === null ? 0 : v;
      }
    }
  }
}

globalThis.SipuaPcm = { Downsampler, Player, STREAM_RATE, FRAME_SAMPLES };

if (typeof AudioWorkletProcessor !== "undefined" && typeof registerProcessor === "function") {
  class SipuaPcmProcessor extends AudioWorkletProcessor {
    constructor() {
      super();
      this.down = new Downsampler(sampleRate, (frame, level) => {
        this.port.postMessage({ type: "frame", frame, level }, [frame.buffer]);
      });
      this.player = new Player(sampleRate, 10);
      this.reported = 0;
      this.port.onmessage = (event) => {
        const data = event.data;
        if (data.type === "play") this.player.enqueue(new Int16Array(data.pcm));
        else if (data.type === "clear") this.player.clear();
      };
    }

    process(inputs, outputs) {
      const input = inputs[0];
      if (input && input[0]) this.down.push(input[0]);
      const output = outputs[0];
      if (output && output[0]) {
        this.player.render(output[0]);
        for (let c = 1; c < output.length; c++) output[c].set(output[0]);
      }
      const frames = Math.floor(this.player.played / FRAME_SAMPLES);
      if (frames !== this.reported) {
        this.reported = frames;
        this.port.postMessage({ type: "played", frames });
      }
      return true;
    }
  }
  registerProcessor("sipua-pcm", SipuaPcmProcessor);
}
