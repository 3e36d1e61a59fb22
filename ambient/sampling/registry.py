"""Sampler backends by name (``local``, ``openai``). Built-in backends register here like outside ones."""

from __future__ import annotations

from collections.abc import Callable

from ambient.config import BACKENDS, Config
from ambient.errors import ConfigError
from ambient.sampling.base import Sampler

SamplerFactory = Callable[[Config], Sampler]

_BACKENDS: dict[str, SamplerFactory] = {}


def register_backend(name: str, factory: SamplerFactory) -> None:
    """Make ``model.backend = name`` build samplers with ``factory(config)`` (and pass the config check)."""
    _BACKENDS[name] = factory
    BACKENDS.add(name)


def backend_names() -> list[str]:
    _load_builtins()
    return sorted(_BACKENDS)


def create_sampler(config: Config) -> Sampler:
    """Build the sampler that ``config.model.backend`` names."""
    _load_builtins()
    name = config.model.backend
    if name not in _BACKENDS:
        raise ConfigError(
            f"model.backend = {name!r} is not a known backend: use one of {', '.join(sorted(_BACKENDS))}"
        )
    return _BACKENDS[name](config)


def _load_builtins() -> None:
    if "local" in _BACKENDS:
        return

    def local(config: Config) -> Sampler:
        from ambient.sampling.local import LocalSampler  # torch is imported only when used

        sampler: Sampler = LocalSampler.from_config(config)
        return sampler

    def openai(config: Config) -> Sampler:
        from ambient.sampling.openai import OpenAISampler

        return OpenAISampler.from_config(config)

    register_backend("local", local)
    register_backend("openai", openai)
