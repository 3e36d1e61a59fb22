"""The daemon's /v1 through clients nobody here wrote: the official ``openai`` SDK, and requests shaped
exactly as socketteer/loom sends them, against a real daemon on 127.0.0.1 (its own thread and loop;
the tiny model, the real store), plus one run on the real default model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from ambient.keys import KeyStore
from ambient.sampling.local import LocalSampler
from ambient.tree import Status
from tests.reliability.helpers import ThreadedDaemon, child_env, make_config

AMBIENT = Path(sys.executable).with_name("ambient")
PROMPT = "The river runs past the old mill and under the stone bridge"
OBSIDIAN = "app://obsidian.md"


class Rig:
    def __init__(self, daemon: ThreadedDaemon, secret: str) -> None:
        self.daemon = daemon
        self.secret = secret
        self.client = openai.OpenAI(base_url=daemon.base + "/v1", api_key=secret, max_retries=0, timeout=120)

    @property
    def store(self) -> Any:
        return self.daemon.app.store

    def offer_of(self, node_text: str) -> Any:
        """The stored offer whose first choice has ``node_text``."""
        for tree in self.daemon.blocking(self.store.list_trees):
            for offer in self.daemon.blocking(self.store.tree_offers, tree.id):
                nodes = [self.daemon.blocking(self.store.get_node, i) for i in offer.node_ids]
                if nodes and nodes[0].text == node_text:
                    return offer, nodes, tree
        raise AssertionError(f"no offer with {node_text!r}")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[Rig]:
    home = tmp_path_factory.mktemp("v1")
    config = make_config(home, server__client_origins=(OBSIDIAN,))
    _, secret = KeyStore(config.home).add("loom")
    with ThreadedDaemon(config, LocalSampler(tiny_model_path, device="cpu")) as daemon:
        yield Rig(daemon, secret)


# ------------------------------------------------------------------ the SDK
def test_models_lists_the_model_and_its_aliases(rig: Rig) -> None:
    ids = [m.id for m in rig.client.models.list()]
    assert ids[0] == rig.daemon.app.sampler.name and "davinci" in ids and "gpt-3.5-turbo-instruct" in ids


def test_a_plain_completion_is_kept_as_an_offer_of_the_key_s_place(rig: Rig) -> None:
    got = rig.client.completions.create(model="any-name", prompt=PROMPT, max_tokens=6, temperature=0, seed=3)
    assert got.object == "text_completion" and got.id.startswith("cmpl-")
    assert got.model == rig.daemon.app.sampler.name
    (choice,) = got.choices
    assert choice.index == 0 and choice.text and choice.logprobs is None
    assert choice.finish_reason in ("stop", "length")
    offer, nodes, tree = rig.offer_of(choice.text)
    assert tree.source == "key:loom" and tree.scope == "key:loom"
    assert offer.settings["n"] == 1 and offer.settings["temperature"] == 0 and offer.settings["seed"] == 3
    assert nodes[0].status == Status.OFFERED  # nothing is picked for the app
    assert nodes[0].provenance["memory"] == "off"  # the app owns its prompt
    assert nodes[0].provenance["source"]["kind"] == "completions"
    assert got.usage is not None and got.usage.completion_tokens == len(nodes[0].tokens)
    assert (
        got.usage.prompt_tokens == rig.daemon.app.sampler.count_tokens(PROMPT) - 1
    )  # its <s> is not the prompt's
    again = rig.client.completions.create(model="davinci", prompt=PROMPT, max_tokens=6, temperature=0, seed=3)
    assert again.choices[0].text == choice.text


def test_n_choices_share_one_offer(rig: Rig) -> None:
    got = rig.client.completions.create(model="davinci", prompt=PROMPT + ".", n=3, max_tokens=5, seed=11)
    assert [c.index for c in got.choices] == [0, 1, 2]
    offer, nodes, _ = rig.offer_of(got.choices[0].text)
    assert [n.text for n in nodes] == [c.text for c in got.choices] and len(offer.node_ids) == 3
    assert got.usage is not None and got.usage.completion_tokens == sum(len(n.tokens) for n in nodes)


def test_logprobs_in_the_legacy_shape(rig: Rig) -> None:
    got = rig.client.completions.create(model="davinci", prompt=PROMPT, max_tokens=6, logprobs=3, seed=5)
    (choice,) = got.choices
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs and lp.text_offset
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset[0] == len(PROMPT)
    assert all(
        b - a == len(t) for a, b, t in zip(lp.text_offset, lp.text_offset[1:], lp.tokens, strict=False)
    )
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert value <= 0 and 1 <= len(top) <= 4 and top[token] == value


def test_echo_scores_the_prompt_and_prompt_tokens_counts_what_was_echoed(rig: Rig) -> None:
    got = rig.client.completions.create(model="davinci", prompt=PROMPT, max_tokens=4, logprobs=2, echo=True)
    (choice,) = got.choices
    assert choice.text.startswith(PROMPT)
    lp = choice.logprobs
    assert lp is not None and got.usage is not None
    assert lp.tokens is not None and lp.text_offset is not None and lp.token_logprobs is not None
    cut = got.usage.prompt_tokens  # Loom slices on it
    assert "".join(lp.tokens[:cut]) == PROMPT
    assert "".join(lp.tokens[cut:]) == choice.text[len(PROMPT) :]
    assert lp.text_offset[0] == 0 and lp.text_offset[cut] == len(PROMPT)
    assert all(v is not None and v <= 0 for v in lp.token_logprobs)  # <s> precedes the first one
    plain = rig.client.completions.create(model="davinci", prompt=PROMPT, max_tokens=2, echo=True)
    assert plain.choices[0].text.startswith(PROMPT) and plain.choices[0].logprobs is None
    scored = rig.client.completions.create(
        model="davinci", prompt=PROMPT, max_tokens=0, echo=True, logprobs=0, n=2
    )
    assert [c.text for c in scored.choices] == [PROMPT, PROMPT]
    assert (
        scored.usage is not None and scored.usage.completion_tokens == 0 and scored.usage.prompt_tokens == cut
    )


def test_streaming_sends_what_the_tree_keeps(rig: Rig) -> None:
    prompt = PROMPT + ", streamed"
    chunks = list(
        rig.client.completions.create(
            model="davinci",
            prompt=prompt,
            n=2,
            max_tokens=6,
            logprobs=1,
            echo=True,
            stream=True,
            seed=2,
            stream_options={"include_usage": True},
        )
    )
    texts, finish = ["", ""], ["", ""]
    for chunk in chunks[:-1]:
        for c in chunk.choices:
            texts[c.index] += c.text
            finish[c.index] = c.finish_reason or finish[c.index]
    assert all(t.startswith(prompt) for t in texts)
    _, nodes, _ = rig.offer_of(texts[0][len(prompt) :])
    assert [prompt + n.text for n in nodes] == texts
    assert finish == [n.meta["finish_reason"] for n in nodes]
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == sum(len(n.tokens) for n in nodes)
    raw = requests.post(
        rig.daemon.base + "/v1/completions",
        headers={"Authorization": f"Bearer {rig.secret}"},
        json={"model": "davinci", "prompt": PROMPT, "max_tokens": 2, "stream": True},
        timeout=60,
    )
    assert raw.headers["Content-Type"].startswith("text/event-stream")
    assert raw.text.endswith("data: [DONE]\n\n") and raw.text.count("data: ") >= 3


def test_errors_in_openai_s_shape(rig: Rig, tmp_path: Path) -> None:
    base = rig.daemon.base + "/v1"
    with pytest.raises(openai.AuthenticationError) as bad_key:
        openai.OpenAI(base_url=base, api_key="amb_not_a_key", max_retries=0).completions.create(
            model="m", prompt="x"
        )
    assert bad_key.value.code == "invalid_api_key" and "ambient keys add" in bad_key.value.message
    with pytest.raises(openai.AuthenticationError):  # the UI's token opens the UI only
        openai.OpenAI(base_url=base, api_key=rig.daemon.server.token, max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError) as unsupported:
        rig.client.completions.create(model="davinci", prompt=PROMPT, frequency_penalty=0.7)
    assert unsupported.value.param == "frequency_penalty" and "frequency_penalty" in unsupported.value.message
    for n in (0, 65):
        with pytest.raises(openai.BadRequestError) as bad_n:
            rig.client.completions.create(model="davinci", prompt=PROMPT, n=n)
        assert bad_n.value.param == "n" and bad_n.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as too_long:
        rig.client.completions.create(model="davinci", prompt="word " * 3000, max_tokens=1)
    assert too_long.value.code == "context_length_exceeded" and too_long.value.param == "prompt"
    with pytest.raises(openai.NotFoundError) as chat:
        rig.client.chat.completions.create(model="davinci", messages=[{"role": "user", "content": "hi"}])
    assert chat.value.code == "unknown_url" and "/v1/completions" in chat.value.message
    raw = requests.get(base + "/nowhere", headers={"Authorization": f"Bearer {rig.secret}"}, timeout=10)
    body = raw.json()
    assert raw.status_code == 404 and set(body["error"]) == {"message", "type", "param", "code"}


def test_a_key_removed_with_the_cli_is_refused_at_once(rig: Rig) -> None:
    home = rig.daemon.config.home
    added = subprocess.run(
        [str(AMBIENT), "keys", "add", "short-lived", "--json"],
        env=child_env(home),
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stderr
    secret = json.loads(added.stdout)["secret"]
    client = openai.OpenAI(base_url=rig.daemon.base + "/v1", api_key=secret, max_retries=0)
    assert client.models.list().data
    removed = subprocess.run(
        [str(AMBIENT), "keys", "remove", "short-lived"], env=child_env(home), capture_output=True, text=True
    )
    assert removed.returncode == 0, removed.stderr
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert secret not in (home / "keys.json").read_text()


# ------------------------------------------------------------------ browsers and Electron apps
def test_cors_preflight_for_an_allowed_and_a_refused_origin(rig: Rig) -> None:
    url = rig.daemon.base + "/v1/completions"
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = requests.options(url, headers={"Origin": OBSIDIAN, **ask}, timeout=10)
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == OBSIDIAN
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert allowed.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    refused = requests.options(url, headers={"Origin": "https://evil.example", **ask}, timeout=10)
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    assert "server.client_origins" in refused.json()["error"]["message"]

    key = {"Authorization": f"Bearer {rig.secret}"}
    body: dict[str, Any] = {"model": "davinci", "prompt": PROMPT, "max_tokens": 2}
    answered = requests.post(url, headers={"Origin": OBSIDIAN, **key}, json=body, timeout=60)
    assert answered.status_code == 200 and answered.headers["Access-Control-Allow-Origin"] == OBSIDIAN
    foreign = requests.post(url, headers={"Origin": "https://evil.example", **key}, json=body, timeout=60)
    assert foreign.status_code == 403
    unauthorized = requests.post(url, headers={"Origin": OBSIDIAN}, json=body, timeout=10)
    assert unauthorized.status_code == 401  # readable by the app, so it can say what is wrong
    assert unauthorized.headers["Access-Control-Allow-Origin"] == OBSIDIAN

    ui = rig.daemon.base + "/api/trees"  # preflight is answered for /v1 only
    not_ui = requests.options(ui, headers={"Origin": OBSIDIAN, **ask}, timeout=10)
    assert not_ui.status_code == 403 and "Access-Control-Allow-Origin" not in not_ui.headers
    assert requests.get(ui, headers={"Origin": OBSIDIAN, **rig.daemon.auth}, timeout=10).status_code == 403
    rebinding = requests.get(
        rig.daemon.base + "/v1/models", headers={"Host": "evil.example", **key}, timeout=10
    )
    assert rebinding.status_code == 403 and "DNS rebinding" in rebinding.json()["error"]["message"]


# ------------------------------------------------------------------ Loom, as it sends
def loom_generate(client: openai.OpenAI, prompt: str, n: int = 3) -> dict[str, Any]:
    """socketteer/loom's gpt.py openAI_generate + format_openAI_response, with its default settings."""
    params = {
        "temperature": 0.9,
        "max_tokens": 8,
        "top_p": 1,
        "echo": True,
        "logprobs": 4,
        "logit_bias": {},
        "n": n,
        "stop": None,
        "model": "davinci",
        "prompt": prompt,
    }
    response = client.completions.create(**params).to_dict()  # type: ignore[call-overload]
    prompt_end_index = response["usage"]["prompt_tokens"]
    completions = []
    for choice in response["choices"]:
        tokens = choice["logprobs"]["tokens"][prompt_end_index:]
        for i, _ in enumerate(tokens):
            counterfactuals = choice["logprobs"]["top_logprobs"][i + prompt_end_index]
            assert counterfactuals is None or isinstance(counterfactuals, dict)
        completions.append({"text": choice["text"][len(prompt) :], "tokens": tokens})
    prompt_tokens = response["choices"][0]["logprobs"]["tokens"][:prompt_end_index]
    assert "".join(prompt_tokens) == prompt
    for c in completions:
        assert "".join(c["tokens"]) == c["text"]
    return {"completions": completions, "prompt": prompt}


def test_a_loom_session_becomes_one_tree(rig: Rig) -> None:
    _, secret = KeyStore(rig.daemon.config.home).add("socketteer")  # its own key: its tree is the only one
    client = openai.OpenAI(base_url=rig.daemon.base + "/v1", api_key=secret, max_retries=0, timeout=120)

    first = loom_generate(client, "In the beginning")
    chosen = next(c for c in first["completions"] if c["text"])
    second_prompt = first["prompt"] + chosen["text"]
    second = loom_generate(client, second_prompt)
    again = loom_generate(client, second_prompt, n=2)  # "generate more" at the same node
    typed = second_prompt + next(c["text"] for c in second["completions"] if c["text"]) + " And then"
    loom_generate(client, typed, n=2)
    assert again["completions"]

    trees = rig.daemon.blocking(rig.store.list_trees, "key:socketteer")
    assert len(trees) == 1
    nodes = rig.daemon.blocking(rig.store.tree_nodes, trees[0].id)
    offers = rig.daemon.blocking(rig.store.tree_offers, trees[0].id)
    assert len(offers) == 4
    root = nodes[0]
    assert root.text == "In the beginning" and not root.author.is_model
    picked = [n for n in nodes if n.author.is_model and n.status == Status.PICKED]
    assert [n.text for n in picked] == [
        chosen["text"],
        next(c["text"] for c in second["completions"] if c["text"]),
    ]
    typed_node = next(n for n in nodes if n.text == " And then")
    assert typed_node.parent_id == picked[1].id and not typed_node.author.is_model
    assert offers[1].parent_id == offers[2].parent_id == picked[0].id  # the same node, offered twice
    assert offers[3].parent_id == typed_node.id
    picks = rig.daemon.blocking(rig.store.actions)
    implicit = [a for a in picks if a["action"] == "pick" and a["data"].get("via") == "key:socketteer"]
    assert [a["node_id"] for a in implicit] == [p.id for p in picked]


# ------------------------------------------------------------------ the real default model
def test_loom_on_the_default_model(tmp_path: Path, default_model_path: Path) -> None:
    config = make_config(tmp_path / "home")
    _, secret = KeyStore(config.home).add("loom")
    with ThreadedDaemon(config, LocalSampler(default_model_path, device="cpu")) as daemon:
        client = openai.OpenAI(base_url=daemon.base + "/v1", api_key=secret, max_retries=0, timeout=300)
        prompt = "The lighthouse keeper climbed the stairs and"
        first = loom_generate(client, prompt, n=2)
        assert all(c["text"] for c in first["completions"])
        follow = loom_generate(client, prompt + first["completions"][0]["text"], n=2)
        assert len(follow["completions"]) == 2
        listed = [m.id for m in client.models.list()]
        assert listed[0] == daemon.app.sampler.name
        trees = daemon.blocking(daemon.app.store.list_trees, "key:loom")
        assert len(trees) == 1
