"""The local backend: N continuations from a transformers causal LM on this machine.

:class:`LocalSampler` (in :mod:`.sampler`) is the backend; the other modules
are its parts:

* :mod:`.text`: token ids to text, stop strings, a word's standalone text
* :mod:`.drawing`: temperature, top-k and top-p, and one seeded draw per branch
* :mod:`.kv_cache`: cache layers that append in place instead of re-copying
* :mod:`.branch`: one continuation being written
* :mod:`.capture`: per-token signals from the passes the sampler makes anyway
* :mod:`.loading`: device choice, loading the model, its end-of-text ids

CPU weight packing, shared with the embedder, is :mod:`ambient.packing`.
"""

# ambient.models first: it sets the offline switches transformers reads on import
from ambient import models  # noqa: F401
from ambient.sampling.local.drawing import choose_tokens
from ambient.sampling.local.kv_cache import new_cache
from ambient.sampling.local.sampler import LocalSampler
from ambient.sampling.local.text import IncrementalDetokenizer, StopMatcher

__all__ = ["IncrementalDetokenizer", "LocalSampler", "StopMatcher", "choose_tokens", "new_cache"]
