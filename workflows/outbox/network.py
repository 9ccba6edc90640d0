"""SSRF protection for outgoing HTTP calls (OUTBOX_BLOCK_PRIVATE_ADDRESSES).

Two checks, both needed: every address the host name resolves to is checked before the
call, which gives a clear error; and the address actually connected to is checked again
on the socket, because a name can resolve to a public address for the first lookup and a
private one for the second (DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


# Not an OSError on purpose: urllib3 would take it for a network error, retry and wrap it.
class BlockedAddress(Exception):
    """The target is on a private, loopback, link-local, multicast or reserved address."""


def blocked_reason(address: str) -> str | None:
    """Why calls to `address` are refused, or None for a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for flag in ("is_loopback", "is_private", "is_link_local", "is_multicast", "is_reserved", "is_unspecified"):
        if getattr(ip, flag):
            return flag.removeprefix("is_").replace("_", "-")
    return None


def check_public_url(url: str) -> None:
    """Raises BlockedAddress if the URL's host resolves to any non-public address;
    socket.gaierror if it does not resolve."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        reason = blocked_reason(str(sockaddr[0]))
        if reason:
            raise BlockedAddress(
                f"refused: {host} resolves to {sockaddr[0]}, a {reason} address (OUTBOX_BLOCK_PRIVATE_ADDRESSES is on)"
            )


def _check_peer(sock: socket.socket, host: str) -> None:
    address = sock.getpeername()[0]
    reason = blocked_reason(address)
    if reason:
        sock.close()
        raise BlockedAddress(
            f"refused: {host} connected to {address}, a {reason} address (OUTBOX_BLOCK_PRIVATE_ADDRESSES is on)"
        )


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host)
        return sock


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def http_session(*, block_private: bool) -> requests.Session:
    session = requests.Session()
    if block_private:
        # A proxy from the environment would be the peer checked instead of the target.
        session.trust_env = False
        guarded = _GuardedAdapter()
        session.mount("http://", guarded)
        session.mount("https://", guarded)
    return session
