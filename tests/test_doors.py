"""The HTTP doors against a browser's pages: another site's requests, bodies that are not JSON,
DNS rebinding, and the headers on every answer (api/doors.py, daemon/token.py; issue 17)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Stoker, free_port, need
from hypothesis import given
from hypothesis import strategies as st

from stoker.api.doors import BODY_METHODS, cross_origin, not_json
from stoker.client import Client

TOKEN = "doors-test-token"

# --------------------------------------------------------------------------------------------
# The judgments, as pure functions
# --------------------------------------------------------------------------------------------

HOST = {b"host": b"127.0.0.1:9100"}


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, None),  # no browser: curl, the Python client, PHP
        (HOST, None),
        ({**HOST, b"origin": b"http://127.0.0.1:9100"}, None),  # the dashboard's own POSTs
        ({**HOST, b"origin": b"HTTP://127.0.0.1:9100"}, None),
        ({**HOST, b"origin": b"https://127.0.0.1:9100"}, None),  # behind a proxy that speaks TLS
        ({b"host": b"localhost:9100", b"origin": b"http://localhost:9100"}, None),
        ({**HOST, b"origin": b"http://127.0.0.1:8000"}, "Origin: http://127.0.0.1:8000"),  # another port
        ({**HOST, b"origin": b"http://evil.example"}, "Origin: http://evil.example"),
        ({**HOST, b"origin": b"null"}, "Origin: null"),  # a sandboxed frame, a file:// page
        ({b"origin": b"http://127.0.0.1:9100"}, "Origin: http://127.0.0.1:9100"),  # no Host to be
        # a proxy that rewrote Host says where the browser went
        ({**HOST, b"origin": b"https://ops.example", b"x-forwarded-host": b"ops.example"}, None),
        ({**HOST, b"origin": b"https://ops.example", b"x-forwarded-host": b"ops.example, x"}, None),
        ({**HOST, b"origin": b"https://evil.example", b"x-forwarded-host": b"ops.example"}, "Origin: https://evil.example"),
        # Sec-Fetch-Site, set by the browser (no page can), decides when it is there
        ({**HOST, b"sec-fetch-site": b"same-origin", b"origin": b"https://ops.example"}, None),
        ({**HOST, b"sec-fetch-site": b"none"}, None),  # the user typed the address
        ({**HOST, b"sec-fetch-site": b"same-site", b"origin": b"http://127.0.0.1:8000"}, "Sec-Fetch-Site: same-site"),
        ({**HOST, b"sec-fetch-site": b"cross-site", b"origin": b"http://127.0.0.1:9100"}, "Sec-Fetch-Site: cross-site"),
    ],
)  # fmt: skip
def test_cross_origin(headers: dict[bytes, bytes], refused: str | None) -> None:
    assert cross_origin("POST", headers) == refused
    # A GET is judged by its Origin only (unless Sec-Fetch-Site vouches for it): a link to the
    # dashboard may be followed from anywhere.
    if headers.get(b"sec-fetch-site") in (b"same-origin", b"none"):
        assert cross_origin("GET", headers) is None
    else:
        without = {k: v for k, v in headers.items() if k != b"sec-fetch-site"}
        assert cross_origin("GET", headers) == cross_origin("POST", without)


@pytest.mark.parametrize("site", [b"cross-site", b"same-site"])
def test_a_link_from_another_site_may_be_followed(site: bytes) -> None:
    navigation = {**HOST, b"sec-fetch-site": site, b"sec-fetch-mode": b"navigate"}  # no Origin
    assert cross_origin("GET", navigation) is None and cross_origin("HEAD", navigation) is None
    assert cross_origin("POST", navigation) == f"Sec-Fetch-Site: {site.decode()}"  # a form posted


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        ("POST", {}, None),  # curl -X POST …/restart: no body, no type
        ("POST", {b"content-length": b"0"}, None),  # the Python client, PHP
        ("POST", {b"content-length": b"0", b"content-type": b"text/plain"}, None),
        ("POST", {b"content-length": b"2", b"content-type": b"application/json"}, None),
        ("POST", {b"content-length": b"2", b"content-type": b"Application/JSON; charset=utf-8"}, None),
        ("POST", {b"content-length": b"2", b"content-type": b"text/plain"}, b"text/plain"),
        ("POST", {b"content-length": b"2", b"content-type": b"text/plain; a=application/json"}, b"text/plain; a=application/json"),
        ("POST", {b"content-length": b"2"}, b""),  # fetch() of an untyped Blob: a simple request
        ("POST", {b"content-length": b"9", b"content-type": b"application/x-www-form-urlencoded"}, b"application/x-www-form-urlencoded"),
        ("POST", {b"content-length": b"9", b"content-type": b"multipart/form-data; boundary=x"}, b"multipart/form-data; boundary=x"),
        ("POST", {b"content-length": b"2", b"content-type": b"application/jsonp"}, b"application/jsonp"),
        ("POST", {b"transfer-encoding": b"chunked", b"content-type": b"text/plain"}, b"text/plain"),
        ("POST", {b"transfer-encoding": b"chunked", b"content-type": b"application/json"}, None),
        ("PUT", {b"content-length": b"2", b"content-type": b"text/plain"}, b"text/plain"),
        ("PATCH", {b"content-length": b"2"}, b""),
        ("DELETE", {b"content-length": b"2", b"content-type": b"text/plain"}, b"text/plain"),
        ("GET", {b"content-length": b"2", b"content-type": b"text/plain"}, None),  # no body is read
        ("HEAD", {b"content-length": b"2"}, None),
    ],
)  # fmt: skip
def test_not_json(method: str, headers: dict[bytes, bytes], refused: bytes | None) -> None:
    assert not_json(method, headers) == refused


_header_value = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


@given(method=st.sampled_from(sorted(BODY_METHODS)), length=st.integers(1, 10**9), content_type=_header_value)
def test_a_body_passes_only_as_json(method: str, length: int, content_type: bytes) -> None:
    headers = {b"content-length": str(length).encode(), b"content-type": content_type}
    is_json = content_type.split(b";")[0].strip().lower() == b"application/json"
    assert (not_json(method, headers) is None) == is_json


@given(
    method=st.sampled_from(["GET", "HEAD", "OPTIONS"]), headers=st.dictionaries(_header_value, _header_value)
)
def test_a_method_without_a_body_is_never_refused_for_it(method: str, headers: dict[bytes, bytes]) -> None:
    assert not_json(method, headers) is None


@given(origin=_header_value, host=_header_value)
def test_an_origin_passes_only_as_the_hosts(origin: bytes, host: bytes) -> None:
    ours = host and origin.lower() in (b"http://" + host.lower(), b"https://" + host.lower())
    for method in ("GET", "POST"):
        assert (cross_origin(method, {b"host": host, b"origin": origin}) is None) == bool(ours)


# --------------------------------------------------------------------------------------------
# A real daemon
# --------------------------------------------------------------------------------------------


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw request on its own connection (the headers exactly as given)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return int(status_line.split()[1]), headers, body


def raw(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    if body or method in ("POST", "PUT", "PATCH", "DELETE"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


JOB = json.dumps({"task": "echo", "params": {"text": "hi"}}).encode()


@pytest.fixture
def daemon(stoker: Stoker) -> Iterator[int]:
    port = free_port()
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{port}"
        token = "{TOKEN}"
        [programs.web]
        command = "sleep 1000"
        start_seconds = 0
        [tasks.echo]
        command = ["echo", "{{text}}"]
        """
    )
    stoker.up()
    yield port


def test_another_sites_text_plain_post_is_refused_and_nothing_runs(stoker: Stoker, daemon: int) -> None:
    """What Chromium sends for a page on 127.0.0.1:8000 doing fetch(…, {mode: "no-cors", body: text})."""
    own = {"Host": f"127.0.0.1:{daemon}"}
    site = {**own, "Origin": "http://127.0.0.1:8000", "Content-Type": "text/plain;charset=UTF-8"}
    browser = {**site, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"}
    with_token = {"Authorization": f"Bearer {TOKEN}"}  # as if something in front added it
    for headers in (browser, {**browser, **with_token}, site, {**site, **with_token}):
        status, answer_headers, body = exchange(daemon, raw("POST", "/api/v1/jobs", headers, JOB))
        assert status == 403, (headers, body)
        error = json.loads(body)["error"]
        assert (
            error["code"] == "cross_origin" and "a page of another site sent this request" in error["message"]
        )
        assert answer_headers["content-type"] == "application/json"
    # Without an Origin (no browser) but not JSON either: 415, and the same for a form, an
    # untyped body; the token does not change it.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**own, **with_token, **({"Content-Type": content_type} if content_type else {})}
        status, _, body = exchange(daemon, raw("POST", "/api/v1/jobs", headers, JOB))
        assert status == 415, body
        error = json.loads(body)["error"]
        assert error["code"] == "unsupported_media_type"
        assert error["message"].startswith("send the body as JSON with Content-Type: application/json (got ")
    assert stoker.client.jobs() == []  # nothing was stored, nothing ran


def test_json_from_clients_and_the_daemons_own_page_still_works(stoker: Stoker, daemon: int) -> None:
    auth = {"Host": f"127.0.0.1:{daemon}", "Authorization": f"Bearer {TOKEN}"}
    typed = {**auth, "Content-Type": "application/json; charset=utf-8"}
    assert exchange(daemon, raw("POST", "/api/v1/jobs", typed, JOB))[0] == 201
    own_page = {**typed, "Origin": f"http://127.0.0.1:{daemon}", "Sec-Fetch-Site": "same-origin"}
    assert exchange(daemon, raw("POST", "/api/v1/jobs", own_page, JOB))[0] == 201
    # A bare POST (curl -X POST, no body, no type) still restarts.
    status, _, body = exchange(daemon, raw("POST", "/api/v1/programs/web/restart", auth))
    assert status == 200 and json.loads(body)[0]["name"] == "web:0"
    status, _, _ = exchange(
        daemon,
        f"POST /api/v1/programs/web/restart HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode(),
    )
    assert status == 200  # fmt: skip
    # The Python client over TCP: bodies typed, bodiless POSTs with no type (the CLI uses it too,
    # over the socket).
    client = Client(url=f"http://127.0.0.1:{daemon}", token=TOKEN, timeout=30)
    job = client.enqueue("echo", text="typed")
    assert client.enqueue_many("echo", [{"text": "a"}, {"text": "b"}])
    assert client.signal("web", "HUP")[0]["name"] == "web:0"
    assert client.program_action("web", "restart")[0]["state"] == "running"
    assert client.wait(job.id, timeout=30).state == "succeeded"
    later = client.enqueue("echo", text="later", delay="1h")
    assert client.cancel(later.id).state == "cancelled"
    assert client.retry(later.id).state == "queued"
    client.pause("default")
    client.resume("default")
    assert len(stoker.client.jobs()) == 6


def test_the_unix_socket_is_not_judged(stoker: Stoker, daemon: int) -> None:
    """The socket's file mode is its door: a client there may send any type (curl -d)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(stoker.state_dir / "stoker.sock"))
        headers = {"Host": "localhost", "Content-Type": "application/x-www-form-urlencoded"}
        sock.sendall(raw("POST", "/api/v1/jobs", headers, JOB))
        status, answer_headers, _ = read_answer(sock)
    assert status == 201
    assert (
        answer_headers["x-content-type-options"] == "nosniff" and answer_headers["x-frame-options"] == "DENY"
    )


def test_every_answer_says_nosniff_and_deny(stoker: Stoker, daemon: int) -> None:
    auth = {"Host": "h", "Authorization": f"Bearer {TOKEN}"}
    requests = {
        200: raw("GET", "/api/v1/status", auth),
        401: raw("GET", "/api/v1/status", {"Host": "h"}),
        403: raw("GET", "/api/v1/status", {"Host": "h", "Origin": "http://evil.example"}),
        404: raw("GET", "/api/v1/nothing", auth),
        413: raw("POST", "/api/v1/jobs", {**auth, "Content-Type": "application/json"}).replace(
            b"Content-Length: 0", b"Content-Length: 999999999"
        ),
        415: raw("POST", "/api/v1/jobs", {**auth, "Content-Type": "text/plain"}, JOB),
        400: b"\x00 not HTTP\r\n\r\n",  # answered by the protocol itself (api/connections.py)
    }
    for expected, request in requests.items():
        status, headers, _ = exchange(daemon, request)
        assert status == expected
        assert headers["x-content-type-options"] == "nosniff", (status, headers)
        assert headers["x-frame-options"] == "DENY", (status, headers)
        assert headers["content-type"] == "application/json", (status, headers)
    status, headers, _ = exchange(daemon, raw("GET", "/", {"Host": "h"}))  # the dashboard's page
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_a_foreign_host_reads_nothing_without_the_token(stoker: Stoker, unused_tcp_port: int) -> None:
    """DNS rebinding: a page of attacker.example whose name now points at 127.0.0.1 asks the
    daemon as attacker.example. Every TCP listen has a token (made when the config sets none),
    which that page cannot have."""
    stoker.write(
        f'[daemon]\nlisten = "127.0.0.1:{unused_tcp_port}"\n[tasks.echo]\ncommand = ["echo", "{{text}}"]\n'
    )
    stoker.up()
    stoker.client.enqueue("echo", text="secret output")
    rebound = {"Host": f"attacker.example:{unused_tcp_port}", "Sec-Fetch-Site": "same-origin"}
    for path in ("/api/v1/jobs", "/api/v1/jobs/1", "/api/v1/jobs/1/logs", "/api/v1/programs", "/metrics"):
        status, _, body = exchange(unused_tcp_port, raw("GET", path, rebound))
        assert status == 401 and b"secret" not in body, (path, body)
    token = (stoker.state_dir / "token").read_text().strip()
    status, _, _ = exchange(
        unused_tcp_port, raw("GET", "/api/v1/jobs", {**rebound, "Authorization": f"Bearer {token}"})
    )
    assert status == 200  # with the token, Host is no one's business (a proxy in front may set any)


# --------------------------------------------------------------------------------------------
# In Chromium
# --------------------------------------------------------------------------------------------

ATTACK = """async ([url, job]) => {
  const bodies = [
    job,  // text/plain: a simple request, sent without asking the daemon first
    new Blob([job]),  // no type at all
    new URLSearchParams({task: "echo"}),  // a form
  ];
  const outcomes = [];
  for (const body of bodies) {
    try {
      outcomes.push((await fetch(url, {method: "POST", mode: "no-cors", body})).type);
    } catch (error) {
      outcomes.push(String(error));
    }
  }
  return outcomes;
}"""


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>another site</title><p>hello"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def another_site() -> Iterator[str]:
    """A page of another origin: a tiny http.server on another free port of 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_a_page_of_another_site_in_chromium_cannot_queue_a_job(
    stoker: Stoker, unused_tcp_port: int, another_site: str
) -> None:
    """The finding itself: a loopback listen with no [daemon] token, a page of another origin
    in Chromium POSTing text/plain with mode "no-cors", which asks the daemon nothing first.
    Then the rebinding page: a name that resolves to 127.0.0.1, with the daemon's own port."""
    chromium = need("chromium")
    from playwright.sync_api import sync_playwright

    port = unused_tcp_port
    stoker.write(f'[daemon]\nlisten = "127.0.0.1:{port}"\n[tasks.echo]\ncommand = ["echo", "{{text}}"]\n')
    stoker.up()
    job = json.dumps({"task": "echo", "params": {"text": "from another site"}})
    with sync_playwright() as playwright:
        # attacker.example resolves to 127.0.0.1, as DNS rebinding makes it do
        rules = "--host-resolver-rules=MAP attacker.example 127.0.0.1"
        browser = playwright.chromium.launch(executable_path=chromium, args=[rules])
        try:
            page = browser.new_page()
            page.goto(another_site)
            for daemon in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
                # "opaque": sent, and answered (what the answer was, the page may not know)
                assert page.evaluate(ATTACK, [f"{daemon}/api/v1/jobs", job]) == ["opaque"] * 3

            # A link from that site to the dashboard is followed: its files need no token.
            page.set_content(f'<a href="http://127.0.0.1:{port}/">stoker</a>')
            page.get_by_role("link", name="stoker").click()
            page.get_by_label("Token").wait_for()
            assert page.url == f"http://127.0.0.1:{port}/"

            page.goto(f"http://attacker.example:{port}/")  # the daemon's own page, under that name
            same_origin = """async (job) => {
              const read = await fetch("/api/v1/jobs");
              const post = await fetch("/api/v1/jobs", {method: "POST", body: job,
                                                         headers: {"Content-Type": "application/json"}});
              return [read.status, post.status];
            }"""
            assert page.evaluate(same_origin, job) == [401, 401]
        finally:
            browser.close()
    assert stoker.client.jobs() == []
