"""Sampling: one :class:`Sampler` interface, several backends."""

from ambient.sampling.base import (
    Capabilities,
    Continuation,
    DoneEvent,
    Sampler,
    SampleResult,
    SamplingOptions,
    StreamEvent,
    Token,
    TokenAlt,
    TokenEvent,
)
from ambient.sampling.registry import create_sampler, register_backend

__all__ = [
    "Capabilities",
    "Continuation",
    "DoneEvent",
    "SampleResult",
    "Sampler",
    "SamplingOptions",
    "StreamEvent",
    "Token",
    "TokenAlt",
    "TokenEvent",
    "create_sampler",
    "register_backend",
]
