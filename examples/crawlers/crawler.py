"""One crawler per merchant: instance N crawls merchant N (STOKER_INSTANCE).

100 copies of this run from one [programs.crawler] table with `instances = 100`.
"""

import os
import random
import signal
import sys
import time

merchant = os.environ.get("MERCHANT", f"merchant-{os.environ.get('STOKER_INSTANCE', '0')}")
stopping = False


def stop(signum: int, frame: object) -> None:
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, stop)
print(f"crawler for {merchant}: started", flush=True)
pages = 0
while not stopping:
    time.sleep(random.uniform(5, 15))
    pages += random.randint(1, 20)
    print(f"crawler for {merchant}: {pages} pages so far", flush=True)
print(f"crawler for {merchant}: stopped after {pages} pages", flush=True)
sys.exit(0)
