"""The completions place: an OpenAI-compatible ``/v1`` (completions and models) served by the daemon.

Apps written for OpenAI's legacy completions API (the original Loom, loomsidian, Tapestry Loom,
SillyTavern) sample ambient's model through it with a client key (:mod:`ambient.keys`); every
request is kept as a tree of that key's place. See ``docs/clients.md``.
"""
