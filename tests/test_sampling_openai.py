"""The openai backend against a real llama-cpp-python server (the bundled Gemma GGUF) on 127.0.0.1.

llama-cpp-python's server ignores ``n`` (one completion per request), so every
``n > 1`` here goes through the fan-out. A server that is down, one that is
slow, a wrong key and a wrong model are real too.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from ambient.cli import main
from ambient.config import load_config
from ambient.errors import ConfigError, InvalidInput, ModelUnavailable
from ambient.sampling.base import SamplingOptions, Token
from ambient.sampling.openai import OpenAISampler
from ambient.store import TreeStore
from tests.llama_server import LlamaServer, free_port
from tests.streaming import TokenLog

PROMPT = "The lighthouse keeper climbed the stairs every evening. One night, he saw"


@pytest.fixture(scope="module")
def sampler(llama_server: LlamaServer) -> OpenAISampler:
    return OpenAISampler(llama_server.url, llama_server.model, api_key=llama_server.api_key, timeout=120)


def opts(**kw: object) -> SamplingOptions:
    """No logprobs unless asked: llama-cpp-python makes them in Python, about 2 s a token with Gemma."""
    base = {"n": 3, "max_tokens": 8, "seed": 11, "temperature": 1.0, "top_logprobs": 0}
    return SamplingOptions(**{**base, **kw})  # type: ignore[arg-type]


def test_n_is_made_up_by_fanning_out(llama_server: LlamaServer) -> None:
    """llama-cpp-python answers n=3 with one branch, and ends a stream when another request arrives."""
    sampler = OpenAISampler(llama_server.url, llama_server.model, api_key=llama_server.api_key, timeout=120)
    first = sampler.generate(PROMPT, opts())
    assert len(first.continuations) == 3 and all(c.text for c in first.continuations)
    assert first.meta["server_n"] == 1 and first.meta["fanned_out"] is True
    # one request asking for n=3 (answered with one), two more at once, then the cut-short ones continued
    assert first.meta["requests"] == 3 + first.meta["resumed"]
    assert len({c.text for c in first.continuations}) >= 2  # branch i has seed + i
    again = sampler.generate(PROMPT, opts())  # known now: n=1 requests, one at a time, nothing cut short
    assert (again.meta["requests"], again.meta["resumed"], again.meta["server_n"]) == (3, 0, 1)
    for result in (first, again):
        assert [c.finish_reason for c in result.continuations] == ["length"] * 3
        assert all(6 <= len(c.tokens) <= 8 for c in result.continuations)  # a chunk may split a character
    assert first.meta["logprobs"] is False  # none asked for, none sent


def test_stop_strings_end_a_branch(sampler: OpenAISampler) -> None:
    result = sampler.generate("1, 2, 3, 4, 5, 6,", opts(n=1, temperature=0.0, stop=(",",), max_tokens=16))
    c = result.continuations[0]
    assert c.text.strip() == "7" and c.finish_reason == "stop"


def test_logprobs_are_what_the_server_sent(sampler: OpenAISampler) -> None:
    result = sampler.generate(PROMPT, opts(n=1, max_tokens=3, top_logprobs=3))
    tokens = result.continuations[0].tokens
    assert result.meta["logprobs"] is True and sampler.capabilities.logprobs is True
    assert all(t.logprob is not None and t.logprob <= 0 for t in tokens)
    assert all(1 <= len(t.top) <= 3 for t in tokens)
    assert all(t.top[0].logprob >= t.top[-1].logprob for t in tokens)


def test_tokens_stream_as_they_are_made(sampler: OpenAISampler) -> None:
    seen: list[tuple[int, Token, float]] = []
    def on_token(branch: int, token: Token) -> None:
        seen.append((branch, token, time.monotonic()))

    result = sampler.generate(PROMPT, opts(n=2, max_tokens=12), on_token)
    for branch, c in enumerate(result.continuations):
        streamed = [t for b, t, _ in seen if b == branch]
        assert "".join(t.text for t in streamed) == c.text and len(streamed) == len(c.tokens)
    times = [when for _, _, when in seen]
    assert times[-1] - times[0] > 0  # tokens arrived over time, not in one piece at the end


def test_every_token_is_streamed(sampler: OpenAISampler) -> None:
    log = TokenLog()
    result = sampler.generate(PROMPT, opts(n=2), log)
    assert len(log.calls) == sum(len(c.tokens) for c in result.continuations)


def test_cancel_stops_the_stream(sampler: OpenAISampler) -> None:
    cancel = threading.Event()
    t0 = time.monotonic()
    result = sampler.generate(PROMPT, opts(n=1, max_tokens=400), lambda b, t: cancel.set(), cancel)
    assert result.continuations[0].finish_reason == "cancelled"
    assert 1 <= len(result.continuations[0].tokens) < 400
    assert time.monotonic() - t0 < 30


def test_token_counts_and_context_length(llama_server: LlamaServer, sampler: OpenAISampler) -> None:
    assert 50 <= sampler.count_tokens(" word" * 50) <= 52  # the server's tokenizer: one token a word
    assert sampler.context_length == 2048  # llama-cpp-python does not say: the documented fallback
    configured = OpenAISampler(llama_server.url, llama_server.model, context_length=1024)
    assert configured.context_length == 1024


def test_wrong_key_is_a_clear_error(llama_server: LlamaServer) -> None:
    bad = OpenAISampler(llama_server.url, llama_server.model, api_key="wrong")
    with pytest.raises(ConfigError, match="401.*model.api_key or AMBIENT_MODEL_API_KEY") as err:
        bad.generate(PROMPT, opts(n=1))
    assert "wrong" not in str(err.value)


def test_a_server_that_is_down_fails_fast() -> None:
    port = free_port()  # nothing listens there
    sampler = OpenAISampler(f"http://127.0.0.1:{port}", "m", context_length=512, backoff=0.05)
    t0 = time.monotonic()
    where = f"http://127.0.0.1:{port}"
    with pytest.raises(ModelUnavailable, match=f"cannot reach the completions server at {where} "):
        sampler.generate(PROMPT, opts(n=2))
    assert time.monotonic() - t0 < 3


def test_a_slow_server_times_out() -> None:
    """A server that accepts the connection and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    sampler = OpenAISampler(f"http://127.0.0.1:{port}", "m", context_length=512, timeout=0.5)
    t0 = time.monotonic()
    try:
        with pytest.raises(ModelUnavailable, match="did not answer in time.*raise model.timeout"):
            sampler.generate(PROMPT, opts(n=1))
    finally:
        listener.close()
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------ end to end


@pytest.fixture
def openai_home(tmp_path: Path, llama_server: LlamaServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("AMBIENT_HOME", str(home))
    monkeypatch.setenv("AMBIENT_MEMORY_ENABLED", "false")
    monkeypatch.setenv("AMBIENT_MODEL_API_KEY", llama_server.api_key)
    monkeypatch.setenv("AMBIENT_SAMPLING_TOP_LOGPROBS", "0")
    return home


def test_cli_continue_with_the_openai_backend(
    openai_home: Path, llama_server: LlamaServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note = tmp_path / "note.md"
    note.write_text(PROMPT)
    argv = ["continue", str(note), "-n", "2", "--max-tokens", "6", "--seed", "3", "--json",
            "--backend", "openai", "--base-url", llama_server.url, "--model", llama_server.model]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["continuations"]) == 2 and all(c["text"] for c in out["continuations"])
    with TreeStore(openai_home / "ambient.sqlite3") as store:
        offer = store.get_offer(out["offer_id"])
    assert offer.meta["backend"] == "openai" and offer.meta["server_n"] == 1
    assert offer.meta["fanned_out"] is True and offer.meta["prompt_tokens"] > 10


def test_bench_runs_both_backends_into_its_own_section(
    llama_server: LlamaServer, tiny_model_path: Path, tmp_path: Path
) -> None:
    from ambient.bench import sampling, sampling_openai
    from ambient.commands.bench import update_section

    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "home")}).replace(
        model__name=llama_server.model, model__api_key=llama_server.api_key
    )
    with pytest.raises(InvalidInput, match="needs --url"):
        sampling.run(config, backend="openai", model_path=tiny_model_path)
    result = sampling_openai.run(  # what `ambient bench sampling --backend openai --url URL` runs, smaller
        config, url=llama_server.url, model_path=tiny_model_path, prompt_tokens=40, new_tokens=4, ns=(1, 2),
        logprob_tokens=2,
    )
    assert result["section"] == "sampling-openai" and [r["n"] for r in result["rows"]] == [1, 2]
    assert result["openai"][2]["requests"] == 2 + result["openai"][2]["resumed"]
    assert result["local"][2]["tokens"] == 8 and result["openai"][2]["server_n"] == 1
    assert all(r["ratio"] > 0 for r in result["rows"]) and len(result["load_before"]) == 3
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("<!-- bench:sampling:begin -->\nlocal figures\n<!-- bench:sampling:end -->\n")
    update_section(bench, result["section"], sampling.to_markdown(result))
    text = bench.read_text()
    assert "local figures" in text and "<!-- bench:sampling-openai:begin -->" in text
    assert "Load average (1/5/15 min) before" in text and "With 5 logprob alternatives" in text
    assert result["openai_logprobs"][1]["logprobs"] is True
