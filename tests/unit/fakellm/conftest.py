from tests.fakellm.fixtures import fake_llm, fake_llm_server, http_client, ssl_context

__all__ = ["fake_llm", "fake_llm_server", "http_client", "ssl_context"]
