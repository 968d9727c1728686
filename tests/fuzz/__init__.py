"""Bad input for the API: Schemathesis over the OpenAPI schema (``python -m tests.fuzz``)
and table-driven malformed requests (``test_bad_input.py``)."""
