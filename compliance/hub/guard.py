"""What a Hub repository may not make us do: write outside the cache, or fetch from another host.

A repository's file names come from the server, so each is checked before it becomes a path on
this machine. Every request ``huggingface_hub`` sends (through its shared HTTP client) and every
metadata read of ours goes only to the ``HF_ENDPOINT`` origin, the public Hub's own file hosts
when the endpoint is the public Hub, and hosts listed in ``$COMPLIANCE_HUB_HOSTS``; a redirect
anywhere else is refused before a byte is sent there.
"""

from __future__ import annotations

import os
import re
import threading
from urllib.parse import urlsplit

from compliance.constants import ENV_HUB_HOSTS
from compliance.errors import UnsafeModelError

_DEFAULT_PORTS = {"http": 80, "https": 443}
# The public Hub serves LFS and Xet files from subdomains of these (cdn-lfs.hf.co, cas-bridge.xethub.hf.co).
_PUBLIC_HUB_DOMAINS = ("huggingface.co", "hf.co")
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_repo_path(where: str, path: str) -> None:
    """Refuse a repository file name that is not a plain relative path inside the repository.

    Args:
        where: the repository, as messages name it (``'org/name' at 0123abcd``).
        path: the file name the server listed.

    Raises:
        UnsafeModelError: ``path`` is absolute, climbs out with ``..``, or holds a backslash or NUL.
    """
    parts = path.split("/")
    if (not path or path.startswith("/") or "\\" in path or "\0" in path or _DRIVE.match(path)
            or any(p in ("", ".", "..") for p in parts)):
        raise UnsafeModelError(
            f"model {where} lists a file named {path!r}, a path outside the repository: refusing the repository "
            "(nothing was downloaded); report it to its owners, or pass a local model folder"
        )


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``url``, the port filled in from the scheme when it is not given."""
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


def _extra_hosts() -> list[str]:
    return [h.strip().lower() for h in os.environ.get(ENV_HUB_HOSTS, "").split(",") if h.strip()]


def trusted_url(url: str) -> bool:
    """Whether a request to ``url`` may go out: the endpoint's origin, the public Hub's file hosts, a listed host."""
    from compliance.hub.client import endpoint

    scheme, host, port = origin(url)
    ep_scheme, ep_host, ep_port = origin(endpoint())
    if (scheme, host, port) == (ep_scheme, ep_host, ep_port):
        return True
    if any(h == host or h == f"{host}:{port}" for h in _extra_hosts()):
        return True
    public = any(ep_host == d or ep_host.endswith("." + d) for d in _PUBLIC_HUB_DOMAINS)
    return public and scheme == "https" and any(host == d or host.endswith("." + d) for d in _PUBLIC_HUB_DOMAINS)


def refuse_untrusted(url: str, what: str) -> None:
    """Raise unless :func:`trusted_url`.

    Args:
        url: where a request is about to go.
        what: what is being fetched, as messages name it (``'org/name' (file README.md)``).

    Raises:
        UnsafeModelError: naming the host and how to allow it.
    """
    if trusted_url(url):
        return
    from compliance.hub.client import endpoint

    _, host, port = origin(url)
    raise UnsafeModelError(
        f"the Hub at {endpoint()} redirected {what} to another host, {host}:{port}: refused, nothing was "
        f"fetched from it; if it is your mirror's file server, add it to {ENV_HUB_HOSTS}"
    )


_LOCK = threading.Lock()
_INSTALLED = False


def install_host_guard() -> None:
    """Make ``huggingface_hub``'s shared HTTP client refuse requests to untrusted hosts (once per process).

    The client follows redirects itself; an event hook on every request it sends (each hop of a
    redirect included) is the one place that sees them all.
    """
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils._http import default_client_factory

        def _guard(request) -> None:
            refuse_untrusted(str(request.url), f"a download ({request.url.path})")

        def factory():
            client = default_client_factory()
            hooks = dict(client.event_hooks)
            hooks["request"] = [*hooks.get("request", []), _guard]
            client.event_hooks = hooks
            return client

        set_client_factory(factory)
        _INSTALLED = True
