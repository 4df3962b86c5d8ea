"""The official `openai` Python client against a real `kokon up`."""

import time

import openai
import pytest

MODEL = "smollm2-135m-instruct"
QUESTION = [
    # Without an instruction this 135M model tends to answer in French.
    {"role": "system", "content": "You are a helpful assistant. Answer in one English sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
CANARY = "KOKON-CANARY-7f3a9c"


@pytest.fixture
def client(kokon):
    base, _, _ = kokon
    return openai.OpenAI(base_url=base, api_key="unused")


def test_lists_the_default_model(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == [MODEL]


def test_chat_completion_answers_paris(client):
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40)
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 10 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_chat_sends_chunks_and_final_usage(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=40, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 3
    assert "Paris" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_legacy_completion(client):
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=5, temperature=0)
    assert r.choices[0].text.strip()
    assert r.usage.completion_tokens <= 5


def test_errors_have_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=5)
    assert e.value.body["param"] == "temperature"


def test_content_never_reaches_the_logs(client, kokon):
    _, log, _ = kokon
    prompt = [{"role": "user", "content": f"Repeat after me: {CANARY}"}]
    r = client.chat.completions.create(model=MODEL, messages=prompt, temperature=0, max_tokens=30)
    assert r.choices[0].message.content is not None
    time.sleep(0.5)
    assert CANARY not in log.read_text(errors="replace")
    assert "Repeat after me" not in log.read_text(errors="replace")


def test_frequency_and_presence_penalties_reach_the_model(client):
    ask = [{"role": "user", "content": "List twenty fruits, one per line."}]
    answer = lambda **kw: client.chat.completions.create(
        model=MODEL, messages=ask, temperature=0, max_tokens=48, **kw).choices[0].message.content
    plain = answer()
    penalised = answer(frequency_penalty=2.0)
    assert penalised != plain, "greedy, the penalty changed the answer"
    assert answer(frequency_penalty=2.0) == penalised, "and still deterministically"
    assert answer(presence_penalty=2.0) != plain
    with pytest.raises(openai.BadRequestError) as e:
        answer(presence_penalty=3)
    assert e.value.body["param"] == "presence_penalty"
