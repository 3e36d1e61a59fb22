"""Tuning a personal model: a LoRA adapter for the local model, learnt from what a person picks.

* :mod:`.data`: the pick log as choices (one chosen continuation against those it beat), and
  which places' picks may be used
* :mod:`.scoring`: continuations' log-likelihoods, the prompt read once, the output layer only
  where a continuation token is predicted
* :mod:`.trainer`: the preference objective (DPO) with peft's LoRA, on the CPU
* :mod:`.range`: whether the adapter kept the model's range (entropy, diversity of offers)
* :mod:`.tune`: one run, from the pick log to a new adapter under ``AMBIENT_HOME/adapters``

The adapters themselves are :mod:`ambient.adapters`; the sampler applies one with
:mod:`ambient.sampling.local.adapter`.
"""

# ambient.models first: it sets the offline switches transformers reads on import, and
# OMP_WAIT_POLICY before torch starts its threads
from ambient import models  # noqa: F401
