"""One webhook: a bounded queue of notifications and the task that POSTs them, in order.

Nothing here can slow the daemon: `offer()` only appends to a queue (a full one drops its
oldest notification and says so in the log), and each POST runs in a thread (urllib: TLS,
proxies from the environment, IPv6), one at a time per webhook. A POST that gets no answer,
or a 408, 425, 429 or 5xx, is tried again after a backoff (1 s, 2 s, 4 s, jittered; a
Retry-After in seconds is honoured up to a minute), TRIES times in all; then the log says it
gave up. Any other answer is final: a 4xx will not get better by asking again. Redirects are
not followed (a POST would arrive as a GET, or not at all): the log asks for the new URL.

The URL may carry a secret (many webhook URLs do), so the log names the webhook and its host only.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http.client
import logging
import random
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Literal

from stoker.about import __version__
from stoker.backoff import backoff_delay
from stoker.config import NotifyConfig

log = logging.getLogger("stoker")

QUEUE_LIMIT = 100  # notifications waiting per webhook; a full queue drops the oldest
TRIES = 4  # the first POST and three retries
RETRY_MIN, RETRY_MAX = 1.0, 30.0
RETRY_AFTER_MAX = 60.0
DETAIL = 200  # characters of an error answer's body kept for the log
USER_AGENT = f"stoker/{__version__}"


@dataclass(frozen=True, slots=True)
class Notification:
    event: str  # "job_failed"
    about: str  # "job 42": for the log
    body: bytes  # the JSON document


@dataclass(frozen=True, slots=True)
class Answer:
    """What a POST came back with: `status` None when there was no HTTP answer at all."""

    status: int | None
    detail: str = ""  # the reason there was no answer, or the start of the answer's body
    retry_after: float | None = None


def verdict(answer: Answer) -> Literal["sent", "retry", "refused"]:
    status = answer.status
    if status is not None and 200 <= status < 300:
        return "sent"
    if status is None or status in (408, 425, 429) or status >= 500:
        return "retry"  # no answer, or the receiver is busy or broken for now
    return "refused"


def retry_delay(tries: int, retry_after: float | None, jitter: float) -> float:
    """Seconds before the next POST after `tries` failed ones."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), RETRY_AFTER_MAX)
    return backoff_delay(RETRY_MIN, RETRY_MAX, tries, jitter)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from `now`."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - now


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx is answered as an HTTPError: the url needs fixing


_OPENER = urllib.request.build_opener(_NoRedirects())


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """POST `body`; blocking (run it in a thread). Never raises for what the network does."""
    request = urllib.request.Request(url, data=body, method="POST")
    for name, value in {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}.items():
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Answer(response.status)
    except urllib.error.HTTPError as e:
        try:
            text = e.read(DETAIL).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            text = ""
        finally:
            e.close()
        if 300 <= e.code < 400:
            text = f"redirects to {e.headers.get('Location', '?')}: set url to where it points"
        retry_after = parse_retry_after(e.headers.get("Retry-After"), time.time())
        return Answer(e.code, " ".join(text.split()), retry_after)
    except urllib.error.URLError as e:
        return Answer(None, str(e.reason))
    except (OSError, http.client.HTTPException, ValueError) as e:  # timeouts, resets, bad answers
        return Answer(None, str(e) or type(e).__name__)


class Webhook:
    """`offer()` notifications; `run()` delivers them until `close()`, then what is left
    gets one try each (no retries) and `run()` returns."""

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config  # replaced by a reload: the next try uses the new url and headers
        self._queue: deque[Notification] = deque()
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._dropped = 0

    @property
    def name(self) -> str:
        return f"notify {self.config.name} ({self.config.host})"

    def pending(self) -> int:
        return len(self._queue)

    def offer(self, note: Notification) -> None:
        """Queue `note`; never waits. A full queue loses its oldest notification."""
        if len(self._queue) >= QUEUE_LIMIT:
            lost = self._queue.popleft()
            if not self._dropped:
                log.warning(
                    "%s: %d notifications waiting: dropping the oldest (%s %s), and more until it catches up",
                    self.name, QUEUE_LIMIT, lost.event, lost.about,
                )  # fmt: skip
            self._dropped += 1
        self._queue.append(note)
        self._wake.set()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()

    async def run(self) -> None:
        while True:
            if not self._queue:
                if self._closed.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            note = self._queue.popleft()
            try:
                reached = await self._deliver(note)
            except Exception:  # a bug here must not end this webhook's deliveries
                log.exception("%s: could not send %s (%s)", self.name, note.event, note.about)
                reached = False
            if self._closed.is_set() and not reached and self._queue:
                # the daemon is stopping and the receiver is not there: no point trying the rest
                left = len(self._queue)
                log.error("%s: %d more notification(s) not sent: the daemon is stopping", self.name, left)
                self._queue.clear()
            if self._dropped and not self._queue:
                log.warning("%s: caught up; %d notification(s) were dropped", self.name, self._dropped)
                self._dropped = 0

    async def _deliver(self, note: Notification) -> bool:
        """POST `note`, trying again while that may help; whether the receiver answered it."""
        what = f"{note.event} ({note.about})"
        tries = 0
        while True:
            tries += 1
            config = self.config
            answer = await asyncio.to_thread(post, config.url, note.body, config.headers, config.timeout)
            result = verdict(answer)
            shown = f"answered {answer.status}" if answer.status is not None else "no answer"
            detail = f"{shown}: {answer.detail}" if answer.detail else shown
            if result == "sent":
                log.info("%s: sent %s", self.name, what)
                return True
            if result == "refused":
                log.error("%s: %s not sent: %s (not retried)", self.name, what, detail)
                return True
            if tries == TRIES or self._closed.is_set():
                log.error("%s: gave up on %s after %d tries: %s", self.name, what, tries, detail)
                return False
            delay = retry_delay(tries, answer.retry_after, random.random())
            log.warning("%s: %s not sent: %s; trying again in %.1fs", self.name, what, detail, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)  # close() cuts the wait short
