"""One crawler per merchant: instance N crawls merchant N (STOKER_INSTANCE).

100 copies of this run from one [programs.crawler] table with `instances = 100`.
"""

import os
import random
import signal
import sys
import threading

merchant = os.environ.get("MERCHANT", f"merchant-{os.environ.get('STOKER_INSTANCE', '0')}")
# Set by SIGTERM. The wait between pages is on it, so a stop ends the wait at once (a plain
# time.sleep would make stoker wait out the rest of the nap, or its stop_timeout and SIGKILL).
stopping = threading.Event()


def stop(signum: int, frame: object) -> None:
    stopping.set()


signal.signal(signal.SIGTERM, stop)
print(f"crawler for {merchant}: started", flush=True)
pages = 0
while not stopping.wait(random.uniform(5, 15)):
    pages += random.randint(1, 20)
    print(f"crawler for {merchant}: {pages} pages so far", flush=True)
print(f"crawler for {merchant}: stopped after {pages} pages", flush=True)
sys.exit(0)
