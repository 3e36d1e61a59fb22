// The microphone's audio thread: downsamples the input to 16 kHz mono, 16-bit PCM, and posts a frame
// (an ArrayBuffer of 100 ms, 3200 bytes) to the page for every 1600 samples; the page sends each frame
// over the event socket. Loaded by app.js with audioWorklet.addModule (same origin: the CSP's
// script-src 'self' allows it). Replaces the deprecated ScriptProcessor.
const RATE = 16000;
const FRAME = RATE / 10;

class MicFrames extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / RATE; // sampleRate: the AudioContext's, a global of the worklet scope
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
    this.sum = 0; // input of the output sample being made, summed (a box low-pass before decimation)
    this.count = 0;
    this.next = this.ratio; // input position (in samples since the start) where that output sample ends
    this.seen = 0; // input samples seen
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // no input yet (or the track ended): keep going
    const n = channels[0].length;
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let c = 0; c < channels.length; c++) v += channels[c][i];
      this.sum += v / channels.length;
      this.count += 1;
      this.seen += 1;
      if (this.seen >= this.next) {
        this.push(this.sum / this.count);
        this.sum = 0;
        this.count = 0;
        this.next += this.ratio;
      }
    }
    return true;
  }

  push(value) {
    const v = Math.max(-1, Math.min(1, value));
    this.frame[this.filled++] = v < 0 ? v * 0x8000 : v * 0x7fff;
    if (this.filled < FRAME) return;
    const out = this.frame.slice();
    this.filled = 0;
    this.port.postMessage(out.buffer, [out.buffer]);
  }
}

registerProcessor("mic-frames", MicFrames);
