"""A protocol-level fake LLM server for tests and benchmarks (Anthropic and OpenAI wire formats).

In process::

    with FakeLLM() as llm:
        llm.script(Reply(text="hi there"), match="hello")
        AsyncAnthropic(base_url=llm.base_url, ...)        # Anthropic: the server root
        AsyncOpenAI(base_url=llm.base_url + "/v1", ...)   # OpenAI: includes /v1

In another process: ``python -m tests.fakellm --port 8199``, controlled with
``RemoteFakeLLM("http://127.0.0.1:8199")`` or started by ``FakeLLMProcess()``.
"""

from tests.fakellm.remote import FakeLLMProcess, RemoteFakeLLM
from tests.fakellm.replies import Reply
from tests.fakellm.server import FakeConfig, FakeLLM, RecordedRequest

__all__ = ["FakeConfig", "FakeLLM", "FakeLLMProcess", "RecordedRequest", "RemoteFakeLLM", "Reply"]
