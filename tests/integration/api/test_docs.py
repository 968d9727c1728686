"""``/docs`` works without the network: Swagger UI's assets come from a package."""

from __future__ import annotations

import re

from tests.integration.api.conftest import Api


async def test_docs_load_only_assets_the_api_serves_itself(api: Api) -> None:
    page = await api.client.get("/docs")

    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(url.startswith("/") for url in urls), urls  # nothing from a CDN
    for url in urls:
        asset = await api.client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
