"""Checks of the security headers, shared by the tests of each page."""

from __future__ import annotations


def assert_strict_policy(response) -> None:
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
