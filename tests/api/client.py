"""An HTTP client that logs in like a browser: session cookie plus CSRF header."""

from __future__ import annotations

from typing import Any

import aiohttp


class ApiClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None
        self.bearer: str | None = None

    async def close(self) -> None:
        await self.session.close()

    async def login(self, username: str, password: str, **extra: Any) -> aiohttp.ClientResponse:
        response = await self.request("POST", "/api/session", json={"username": username, "password": password, **extra})
        if response.status == 200:
            self.csrf = (await response.json())["csrfToken"]
        return response

    async def request(self, method: str, path: str, *, csrf: bool = True, **kwargs: Any) -> aiohttp.ClientResponse:
        headers = dict(kwargs.pop("headers", {}))
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            headers["X-CSRF-Token"] = self.csrf
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        response = await self.session.request(method, self.base_url + path, headers=headers, **kwargs)
        await response.read()
        return response

    async def json(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        body = await response.json() if response.content_type == "application/json" else None
        assert response.status == expect, (response.status, body)
        return body
