"""Store addresses that are URLs: what counts as one, how to reach it, and what its failures mean.

A store address is a local path or a URL (``http(s)://``, ``s3://``,
``gs://``).  URLs reach the bucket or server through the upstream
library's obstore backend; this module only builds that backend's options
(anonymous access when no credentials are found, timeouts, retries with
backoff) and turns network failures into sentences; ``caching.py`` keeps
what a session fetched and ``access.py`` opens the store.  It writes no
HTTP client of its own and imports neither zarr nor ``zarr_vectors``.

Remote stores are read-only here: see ``docs/remote.md``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections import deque
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

#: URL schemes a store can live at (the upstream backends' cloud schemes that this plugin has tested).
SCHEMES = ("http", "https", "s3", "gs", "gcs")
#: Seconds a request may take before it counts as failed (``$NAPARI_ZARR_VECTORS_TIMEOUT``).
DEFAULT_TIMEOUT_S = 20.0
#: Retries of a failed request (connection errors, 5xx, timeouts), with exponential backoff.
DEFAULT_RETRIES = 3
#: Most bytes of chunk data kept per store (metadata is always kept): a session reads nothing twice.
CACHE_BYTES = 256 * 2**20
#: Most requests in flight per store (``$NAPARI_ZARR_VECTORS_CONNECTIONS``): concurrent, but no flood a small
#: server drops (python's http.server has a backlog of 5; 264 HEADs at once stalled there for seconds).
DEFAULT_CONNECTIONS = 16
#: Set when the interpreter exits: requests not yet sent fail at once, so a worker still reading ends quickly.
CLOSING = threading.Event()


class RemoteError(OSError):
    """A remote store could not be reached or read; the message names the URL and what to check."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


def is_url(address: Any) -> bool:
    """True for ``scheme://...`` addresses other than ``file://`` (a Windows ``C:\\`` is a path)."""
    if isinstance(address, os.PathLike) or not isinstance(address, str):
        return False
    scheme = urlsplit(address).scheme.lower()
    return len(scheme) > 1 and scheme != "file" and "://" in address


def local_path(address: str | os.PathLike[str]) -> Path:
    """A local address as a path (``file://`` URLs included)."""
    text = os.fspath(address)
    if text.lower().startswith("file://"):
        text = urlsplit(text).path
    return Path(text)


def check_scheme(url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise RemoteError(
            f"'{shown(url)}': the scheme '{scheme}://' is not one this plugin opens. "
            f"Use one of {', '.join(s + '://' for s in SCHEMES)}, or a local path."
        )
    if not urlsplit(url).netloc:
        raise RemoteError(
            f"'{shown(url)}' names no server or bucket. Write it as {scheme}://HOST-OR-BUCKET/path/store.zv."
        )


def canonical_url(url: str) -> str:
    """One spelling per store: lower-case scheme, ``gcs://`` as ``gs://``, no trailing slash."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    scheme = "gs" if scheme == "gcs" else scheme
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))


def shown(url: str) -> str:
    """The URL as messages and layer metadata show it: no user, password, query or fragment.

    Signed URLs carry their credentials in the query string, basic-auth
    URLs in the user part; neither may reach a log or a notification.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# ---------------------------------------------------------------- secrets never leave

#: What a secret is replaced with in text.
REDACTED = "[redacted]"
#: Query parameters that carry a signature, a token or a key (S3 and GCS signed URLs, Azure SAS, OAuth).
SECRET_PARAMETERS = (
    "X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Credential", "X-Goog-Signature", "X-Goog-Credential",
    "X-Goog-Security-Token", "Signature", "sig", "AWSAccessKeyId", "GoogleAccessId", "token", "access_token",
    "id_token", "refresh_token", "security_token", "session_token", "api_key", "apikey", "client_secret",
    "password", "passwd", "secret",
)  # fmt: skip
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
#: ``scheme://user:password@``: greedy up to the authority's last ``@`` (a password may hold a raw ``@``).
_USER_INFO = re.compile(rf"({_SCHEME})[^\s/?#]*@")
#: ``scheme://host/path?query#fragment``: the query and fragment, up to a space or a quote.
_URL_QUERY = re.compile(rf"({_SCHEME}[^\s?#'\"<>`]*)[?#][^\s'\"<>`]*")
#: The same two in a percent-encoded URL (``scheme%3A%2F%2Fuser%3Apw%40host%2Fpath%3Fquery``).
_QUOTED_USER_INFO = re.compile(rf"({_SCHEME[:-3]}%3A%2F%2F)(?:(?!%2F|%3F|%23)[^\s/?#&])*%40", re.IGNORECASE)
_QUOTED_URL_QUERY = re.compile(
    rf"({_SCHEME[:-3]}%3A%2F%2F(?:(?!%3F|%23)[^\s?#&'\"<>`])*)(?:%3F|%23)[^\s&'\"<>`]*", re.IGNORECASE
)
#: ``name=value`` (or percent-encoded ``name%3Dvalue``) of a secret parameter anywhere in a text.
_SECRET_PARAMETER = re.compile(
    r"(?:(?<![\w-])|(?<=%26)|(?<=%3F))(" + "|".join(re.escape(n) for n in SECRET_PARAMETERS) + r")(=|%3D)"
    r"[^&\s'\"<>`;,]+",
    re.IGNORECASE,
)
#: Secrets shorter than this are not searched for as plain text (they would match ordinary words).
_SHORTEST_SECRET = 3


def _secrets_of(url: str) -> list[str]:
    """The literal secrets of ``url`` as they may be spelled in a text: password, signature values, the query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    secret_names = {n.lower() for n in SECRET_PARAMETERS}
    for pair in f"{parts.query}&{parts.fragment}".split("&"):
        name, _, value = pair.partition("=")
        if unquote(name).lower() in secret_names:
            found.append(value)
    found.append(parts.query)
    spelled = {form for s in found for form in (s, unquote(s), quote(unquote(s), safe=""))}
    # longest first: a query contains its signature's value
    return sorted((s for s in spelled if len(s) >= _SHORTEST_SECRET), key=len, reverse=True)


def redact(text: str, url: str | None = None) -> str:
    """``text`` with every URL's user and password, query and fragment removed, and signatures replaced.

    The one redaction applied wherever an address becomes text (messages,
    notifications, exceptions, logs, layer sources): ``scheme://user:pw@``
    becomes ``scheme://``; a query or fragment after ``scheme://...`` is
    dropped (as ``shown`` drops it); a signature-bearing parameter
    (``SECRET_PARAMETERS``, any case, ``=`` or ``%3D``) anywhere keeps its
    name and loses its value.  With ``url``, its password, its signature
    values and its query are replaced too wherever they appear, plain or
    percent-encoded (a library may quote the address spelled its own way).
    """
    if not text:
        return text
    if url:
        for secret in _secrets_of(url):
            text = text.replace(secret, REDACTED)
    for pattern in (_USER_INFO, _URL_QUERY, _QUOTED_USER_INFO, _QUOTED_URL_QUERY):
        text = pattern.sub(r"\1", text)
    return _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Redacts URL credentials from a log record (message, arguments, traceback, stack) before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that does not format is logging's to report, not ours
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if redact(text) != text:  # the traceback names a URL: only its redacted text goes on
                record.exc_text, record.exc_info = redact(text), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


#: Loggers (and their children) whose records may quote a store's URL: the storage libraries', this plugin's,
#: and npe2's (which logs the paths a reader opened nothing from).
GUARDED_LOGGERS = ("zarr", "zarr_vectors", "obstore", "napari_zarr_vectors", "npe2")
_LOG_FILTER = RedactingFilter()


def guarded_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the redacting filter: how this plugin's modules get their loggers."""
    logger = logging.getLogger(name)
    if _LOG_FILTER not in logger.filters:
        logger.addFilter(_LOG_FILTER)
    return logger


def guard_logs() -> None:
    """Put the redacting filter on every guarded logger that exists now (idempotent, cheap).

    A filter on a logger sees only records logged to that logger itself,
    not its children's, so each existing child gets it: this runs when
    ``store`` is imported and again whenever a URL is opened, to catch
    loggers of modules imported since.
    """
    names = [n for n, lg in list(logging.Logger.manager.loggerDict.items()) if isinstance(lg, logging.Logger)]
    for name in {*GUARDED_LOGGERS, *(n for n in names if n.split(".", 1)[0] in GUARDED_LOGGERS)}:
        guarded_logger(name)


def can_list(url: str) -> bool:
    """Buckets list folders; a web server does not (obstore would send WebDAV PROPFIND)."""
    return urlsplit(url).scheme.lower() not in ("http", "https")


def name_of(url: str) -> str:
    """The store's folder name (the last path part)."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or urlsplit(url).netloc


def _env_number(name: str, default: float, cast: type, least: float) -> Any:
    """``$name`` as a ``cast`` number no smaller than ``least``; ``default`` when unset or not a number."""
    raw = os.environ.get(name)
    try:
        return max(cast(least), cast(raw)) if raw else default
    except ValueError:
        return default


def timeout_s() -> float:
    """Seconds a request may take (``$NAPARI_ZARR_VECTORS_TIMEOUT``)."""
    return _env_number("NAPARI_ZARR_VECTORS_TIMEOUT", DEFAULT_TIMEOUT_S, float, 0.1)


def connections() -> int:
    """Requests in flight per store (``$NAPARI_ZARR_VECTORS_CONNECTIONS``)."""
    return _env_number("NAPARI_ZARR_VECTORS_CONNECTIONS", DEFAULT_CONNECTIONS, int, 1)


def retries() -> int:
    """Retries of a failed request (``$NAPARI_ZARR_VECTORS_RETRIES``)."""
    return _env_number("NAPARI_ZARR_VECTORS_RETRIES", DEFAULT_RETRIES, int, 0)


# ---------------------------------------------------------------- redirects to another host

#: Hosts a web server may redirect a request to besides its own: comma-separated names, or ``*`` for any host.
REDIRECT_HOSTS_ENV = "NAPARI_ZARR_VECTORS_REDIRECT_HOSTS"
#: What the redirect guard answers (421 Misdirected Request), and how a failure names it.
REDIRECT_STATUS = 421
_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class _RedirectGuard:
    """Where a request for any host but the store's goes: a listener on 127.0.0.1 that refuses it (421).

    obstore's HTTP client follows redirects itself and has no setting to
    stop it.  It does route requests through a proxy except for the hosts
    it is told to exclude: with this listener as the proxy and the store's
    own host excluded, requests to the store go straight to it (and a
    redirect within that host is followed as before), while one a server
    redirects to another host reaches this listener, which answers 421
    Misdirected Request (or refuses the tunnel, for https) without
    contacting that host.  It keeps the last hosts it refused (host and
    port only, never a path or query), for the message.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.refused: deque[str] = deque(maxlen=32)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, name="nzv-redirect-guard", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # pragma: no cover - the socket closes only with the interpreter
                return
            threading.Thread(target=self._refuse, args=(conn,), daemon=True).start()

    def _refuse(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    piece = conn.recv(4096)
                    if not piece:
                        break
                    head += piece
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("ascii", "replace") if head else ""
                parts = urlsplit(target if "://" in target else f"//{target}")
                host = parts.hostname or ""
                self.refused.append(f"{host}:{parts.port}" if parts.port else host)
                body = b"redirect to another host refused by napari-zarr-vectors"
                conn.sendall(
                    b"HTTP/1.1 421 Misdirected Request\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
                )
            except (OSError, IndexError, ValueError):
                pass


_GUARD: _RedirectGuard | None = None
_GUARD_LOCK = threading.Lock()


def _redirect_guard() -> _RedirectGuard:
    global _GUARD
    with _GUARD_LOCK:
        if _GUARD is None:
            _GUARD = _RedirectGuard()
        return _GUARD


def redirect_hosts() -> list[str] | None:
    """Hosts a server may redirect to besides the store's own (``$NAPARI_ZARR_VECTORS_REDIRECT_HOSTS``); None: any."""
    raw = os.environ.get(REDIRECT_HOSTS_ENV, "").strip()
    if raw == "*":
        return None
    return [h.strip().lower() for h in raw.split(",") if h.strip()]


def redirect_options(url: str) -> dict[str, str]:
    """obstore client options that refuse a redirect of a web server's store to another host (see ``_RedirectGuard``).

    None are needed when the user allows any host, or has a proxy of his
    own configured (``HTTPS_PROXY`` and the like): then that proxy's rules
    apply, as obstore supports one proxy only.
    """
    allowed = redirect_hosts()
    host = urlsplit(url).hostname
    if allowed is None or not host or any(os.environ.get(name) for name in _PROXY_ENV):
        return {}
    return {"proxy_url": _redirect_guard().url, "proxy_excludes": ",".join(dict.fromkeys([host.lower(), *allowed]))}


def refused_redirect() -> str | None:
    """The host (and port) the guard last refused a redirect to, if any."""
    return _GUARD.refused[-1] if _GUARD is not None and _GUARD.refused else None


def _aws_credentials_configured() -> bool:
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE") or env.get("AWS_PROFILE"):
        return True
    files = [env.get("AWS_SHARED_CREDENTIALS_FILE"), env.get("AWS_CONFIG_FILE")]
    files += [str(Path.home() / ".aws" / "credentials"), str(Path.home() / ".aws" / "config")]
    return any(f and Path(f).is_file() for f in files)


def _google_credentials_configured() -> bool:
    env = os.environ
    if env.get("GOOGLE_APPLICATION_CREDENTIALS") or env.get("GOOGLE_SERVICE_ACCOUNT"):
        return True
    if env.get("GOOGLE_SERVICE_ACCOUNT_KEY") or env.get("GOOGLE_SERVICE_ACCOUNT_PATH"):
        return True
    adc = (
        Path(env.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud") / "application_default_credentials.json"
    )
    return adc.is_file()


def storage_options(url: str) -> dict[str, Any]:
    """obstore ``from_url`` options for ``url``: timeouts, retries, and anonymous access when no credentials exist.

    S3 credentials come from the AWS chain (environment, ``AWS_PROFILE`` and
    ``~/.aws`` through boto3 when it is installed); GCS from
    ``GOOGLE_APPLICATION_CREDENTIALS`` or gcloud's application default
    credentials.  With none, requests go unsigned, which public buckets
    accept.  ``AWS_ENDPOINT_URL`` points S3 at another server (MinIO, moto).
    """
    scheme = urlsplit(url).scheme.lower()
    timeout = timedelta(seconds=timeout_s())
    client: dict[str, Any] = {
        "timeout": timeout,
        "connect_timeout": timedelta(seconds=min(timeout_s(), 5.0)),
        "pool_max_idle_per_host": "32",
    }
    opts: dict[str, Any] = {
        "client_options": client,
        "retry_config": {
            "max_retries": retries(),
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2},
            "retry_timeout": timedelta(seconds=3 * timeout_s()),
        },
    }
    if scheme in ("http", "https"):
        client.update(redirect_options(url))
    if scheme == "http":
        client["allow_http"] = True  # obstore refuses plain http unless told; a lab's own server may be plain http
    elif scheme == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
        if endpoint.lower().startswith("http://"):
            client["allow_http"] = True
        if _aws_credentials_configured():
            provider = _boto3_provider()
            if provider is not None:
                opts["credential_provider"] = provider
        else:
            opts["skip_signature"] = True
    elif scheme in ("gs", "gcs") and not _google_credentials_configured():
        opts["skip_signature"] = True
    return opts


def _boto3_provider() -> Any:
    """The full AWS credential chain (profiles, SSO, instance roles) when boto3 is installed; None otherwise."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return None  # obstore reads the environment itself
    try:
        import boto3  # noqa: F401
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        return None
    return Boto3CredentialProvider()


def index_page_names(page: bytes) -> list[str] | None:
    """The entries of a web server's folder index page (relative links), or None when it is not one."""
    from urllib.parse import unquote

    text = page[: 4 * 2**20].decode("utf-8", "replace")
    if "<a " not in text.lower():
        return None
    names = []
    for href in re.findall(r"""<a\s[^>]*href\s*=\s*["']([^"'#?]+)["']""", text, re.IGNORECASE):
        if "://" in href or href.startswith(("/", ".")):
            continue  # parent links, absolute links, sort links: not entries of this folder
        name = unquote(href).rstrip("/")
        if name and "/" not in name and name not in names:
            names.append(name)
    return names


# ---------------------------------------------------------------- failures as sentences


def _status_of(text: str) -> int | None:
    for pattern in (r"status(?: code)?:? (\d{3})", r"\b(\d{3}) (?:Not Found|Forbidden|Unauthorized)", r"HTTP (\d{3})"):
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            return int(m.group(1))
    return None


def explain(url: str, exc: BaseException, what: str = "") -> str:
    """One sentence naming the URL, what failed and what to check, for any network failure."""
    text = f"{type(exc).__name__}: {exc}"
    where = shown(url)
    doing = f" while {what}" if what else ""
    status = _status_of(text)
    lowered = text.lower()
    if isinstance(exc, FileNotFoundError) or status == 404 or "notfound" in lowered.replace(" ", ""):
        return (
            f"'{where}': the server answered 404 Not Found{doing}. Check the URL (the store folder, ending in .zv or "
            ".zarrvectors), and that every file of the store was uploaded."
        )
    if status == REDIRECT_STATUS or any(m in lowered for m in ("misdirected request", "tunnelunsuccessful")):
        target = refused_redirect()
        to = f" ({target})" if target else ""
        return (
            f"'{where}': the server redirected the request{doing} to another host{to}, and redirects away from the "
            "store's own host are not followed (a server could send a reader anywhere). If you trust that host, "
            f"allow it: {REDIRECT_HOSTS_ENV}=HOST (comma-separated, or * for any host)."
        )
    if status in (401, 403) or "forbidden" in lowered or "accessdenied" in lowered or "unauthori" in lowered:
        return (
            f"'{where}': access denied ({status or 'forbidden'}){doing}. The bucket or server refuses this request: "
            "check that it is public, or set credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID for s3://, "
            "GOOGLE_APPLICATION_CREDENTIALS for gs://)."
        )
    connect_markers = ("connectionrefused", "kind: connect", "tcp connect error", "dns error", "failed to lookup")
    connect_markers += ("connection refused", "network is unreachable", "no route to host", "name or service not known")
    if isinstance(exc, ConnectionError) or any(m in lowered for m in connect_markers):
        return (
            f"'{where}': cannot connect{doing} (the server refused the connection or cannot be reached). "
            "Check that you are online and that the address is right."
        )
    timeout_markers = ("kind: timeout", "timedout", "timed out", "operation timed out", "deadline has elapsed")
    if isinstance(exc, TimeoutError) or any(m in lowered for m in timeout_markers):
        return (
            f"'{where}': the server did not answer within {timeout_s():g} s{doing}. The network or server is slow "
            "or stalled: try again, or allow more time with $NAPARI_ZARR_VECTORS_TIMEOUT (seconds)."
        )
    # obstore's text quotes the request URL in full (user, password, signed query): redacted before it is cut
    detail = redact(str(exc), url).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return redact(f"'{where}': reading the store failed{doing}: {detail}", url)


def is_network_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from reaching a remote store (obstore's errors, timeouts, connection failures)."""
    mod = type(exc).__module__ or ""
    if mod.startswith("obstore") or isinstance(exc, RemoteError | TimeoutError | ConnectionError):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_network_error(cause)
