"""What /v1/completions honours, accepts as neutral and refuses (params.py); its answer's shape (wire.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ambient.config import SamplingSection
from ambient.sampling.base import PromptScore, Token, TokenAlt
from integrations.completions import params, wire
from integrations.completions.errors import OpenAIError, error_body

LOOM = {  # what socketteer/loom sends (gpt.py: openAI_generate)
    "model": "davinci",
    "prompt": "Once upon a time",
    "max_tokens": 20,
    "n": 3,
    "temperature": 0.8,
    "top_p": 1,
    "echo": True,
    "logprobs": 4,
    "logit_bias": {},
    "stop": None,
}


def refused(body: dict[str, Any], vocab: int = 0) -> OpenAIError:
    with pytest.raises(OpenAIError) as info:
        params.parse(body, vocab)
    return info.value


def test_loom_s_request_is_read_as_sent() -> None:
    asked = params.parse(LOOM)
    assert asked.prompts == ("Once upon a time",)
    assert (asked.n, asked.max_tokens, asked.temperature, asked.top_p) == (3, 20, 0.8, 1.0)
    assert asked.echo and asked.logprobs == 4 and asked.logit_bias == {} and asked.stop == ()
    options = asked.overrides(SamplingSection(stop=("\n",), top_k=40)).options(SamplingSection(stop=("\n",)))
    assert options.stop == () and options.top_k == 0  # exactly what was asked, not the configured ones
    assert options.top_logprobs == 5  # alternatives kept as configured (the UI shows them)


def test_omitted_values_are_openai_s_defaults() -> None:
    asked = params.parse({"model": "m", "prompt": ["a", "b"]})
    assert (asked.n, asked.max_tokens, asked.temperature, asked.top_p) == (1, 16, 1.0, 1.0)
    assert asked.prompts == ("a", "b") and asked.logprobs is None and not asked.echo and not asked.stream


@pytest.mark.parametrize(
    "extra",
    [
        {"frequency_penalty": 0},
        {"presence_penalty": 0.0},
        {"best_of": 1},
        {"best_of": 3},
        {"suffix": None},
        {"suffix": ""},
        {"logit_bias": None},
        {"user": "ada"},
        {"seed": -1},
        {"top_k": -1},
        {"repetition_penalty": 1},
        {"min_p": 0},
        {"stream": True, "stream_options": {"include_usage": True}},
    ],
)
def test_neutral_values_are_accepted(extra: dict[str, Any]) -> None:
    params.parse({**LOOM, **extra})


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"best_of": 5}, "best_of"),
        ({"suffix": "The end."}, "suffix"),
        ({"repetition_penalty": 1.1}, "repetition_penalty"),
        ({"mirostat": 2}, "mirostat"),
        ({"functions": []}, "functions"),
        ({"n": 0}, "n"),
        ({"n": 65}, "n"),
        ({"n": "3"}, "n"),
        ({"n": True}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 5000}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"logprobs": 21}, "logprobs"),
        ({"logprobs": True}, "logprobs"),
        ({"stop": ""}, "stop"),
        ({"stop": ["a", 1]}, "stop"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"logit_bias": []}, "logit_bias"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": [[1, 2]]}, "prompt"),
        ({"prompt": ["a"] * 17}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"model": ""}, "model"),
        ({"echo": "yes"}, "echo"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_what_would_change_the_result_is_refused_naming_it(extra: dict[str, Any], param: str) -> None:
    error = refused({**LOOM, **extra, "echo": extra.get("echo", False)})
    assert error.param == param and error.http_status == 400
    assert param in str(error) or param == "functions"


def test_an_unknown_argument_is_named_and_what_is_taken_listed() -> None:
    error = refused({**LOOM, "functions": []})
    assert str(error).startswith("Unrecognized request argument supplied: functions")
    assert "logit_bias" in str(error) and error.code == "unknown_parameter"


def test_missing_model_or_prompt_and_bad_bodies() -> None:
    assert refused({"prompt": "x"}).param == "model"
    assert refused({"model": "m"}).param == "prompt"
    assert "JSON object" in str(refused([1, 2]))  # type: ignore[arg-type]


def test_logit_bias_is_checked_against_the_model_s_words() -> None:
    assert params.parse({**LOOM, "logit_bias": {"511": -100}}, vocab_size=512).logit_bias == {511: -100.0}
    error = refused({**LOOM, "logit_bias": {"50256": -100}}, vocab=512)
    assert error.param == "logit_bias" and "0..511" in str(error) and "not GPT's" in str(error)


def test_echo_alone_may_ask_for_no_tokens() -> None:
    assert not params.parse({**LOOM, "max_tokens": 0}).samples
    assert refused({**LOOM, "max_tokens": 0, "echo": False}).param == "max_tokens"


def test_seeds_map_to_the_sampler_s_range() -> None:
    assert params.parse({**LOOM, "seed": 7}).seed == 7
    assert params.parse({**LOOM, "seed": 2**63 - 1}).seed == (2**63 - 1) % 2**62
    assert params.parse({**LOOM, "seed": -5}).seed is None


def test_errors_have_openai_s_shape() -> None:
    body = error_body(400, "n must be ...", OpenAIError("n must be ...", param="n", code="invalid_value"))
    assert body == {
        "error": {
            "message": "n must be ...",
            "type": "invalid_request_error",
            "param": "n",
            "code": "invalid_value",
        }
    }
    assert error_body(401, "no", None)["error"]["code"] == "invalid_api_key"
    assert error_body(404, "no route POST /v1/chat/completions: see /api/openapi.json", None)["error"] == {
        "message": "no route POST /v1/chat/completions: ambient's /v1 serves POST /v1/completions and "
        "GET /v1/models",
        "type": "invalid_request_error",
        "param": None,
        "code": "unknown_url",
    }
    assert error_body(503, "busy", None)["error"]["type"] == "server_error"


# ------------------------------------------------------------------ the answer
def test_logprobs_in_the_legacy_shape() -> None:
    score = PromptScore(
        tokens=[
            Token("Once", None),
            Token(" upon", -2.0, (TokenAlt(" upon", -2.0), TokenAlt(" more", -2.5))),
        ],
        offsets=[0, 4],
    )
    made = [
        Token(" a", -0.1, (TokenAlt(" a", -0.1), TokenAlt(" the", -3.0))),
        Token(" time", -0.5, (TokenAlt(" day", -0.2),)),
    ]
    lp = wire.echo_logprobs(score, 1).extend(made).as_dict()
    assert lp["tokens"] == ["Once", " upon", " a", " time"]
    assert lp["token_logprobs"] == [None, -2.0, -0.1, -0.5]
    assert lp["top_logprobs"] == [None, {" upon": -2.0}, {" a": -0.1}, {" day": -0.2, " time": -0.5}]
    assert lp["text_offset"] == [0, 4, 9, 11]
    alone = wire.Logprobs(0, start=9).extend(made).as_dict()
    assert alone["top_logprobs"] == [{" a": -0.1}, {" time": -0.5}] and alone["text_offset"] == [9, 11]


def test_the_same_word_from_two_ids_keeps_its_best() -> None:
    token = Token("x", -1.0, (TokenAlt("a", -0.5), TokenAlt("a", -0.7), TokenAlt("x", -1.0)))
    assert wire.top_words(token, 3) == {"a": -0.5, "x": -1.0}


def test_events_and_models() -> None:
    assert wire.event({"a": 1}) == b'data: {"a":1}\n\n' and wire.DONE == b"data: [DONE]\n\n"
    listed = wire.models("gemma", ("davinci", "gemma"), 5)
    assert [m["id"] for m in listed["data"]] == ["gemma", "davinci"]
    assert listed["data"][1]["root"] == "gemma"
