"""A worker that crashes now and then, to watch stoker restart it (see the RESTARTS column,
and the crash loop status shows once it has crashed twice)."""

import os
import random
import sys
import time

print(f"flaky: started, pid {os.getpid()}", flush=True)
time.sleep(random.uniform(3, 12))
print("flaky: oops, crashing", file=sys.stderr, flush=True)
sys.exit(1)
