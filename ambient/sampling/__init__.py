"""Sampling: one :class:`Sampler` interface, several backends."""

from ambient.sampling.base import (
    Capabilities,
    Continuation,
    Sampler,
    SampleResult,
    SamplingOptions,
    Token,
    TokenAlt,
)
from ambient.sampling.registry import create_sampler, register_backend

__all__ = [
    "Capabilities",
    "Continuation",
    "SampleResult",
    "Sampler",
    "SamplingOptions",
    "Token",
    "TokenAlt",
    "create_sampler",
    "register_backend",
]
