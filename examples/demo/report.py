"""A job of the demo: builds a "report" for a day, and fails now and then (then it is retried)."""

import random
import sys
import time

day = sys.argv[1]
for step in ("collecting orders", "summing totals", "writing the report"):
    print(f"{day}: {step}", flush=True)
    time.sleep(0.3)
if random.random() < 0.3:
    print(f"{day}: the database went away", file=sys.stderr)
    sys.exit(1)
print(f"{day}: report ready, {random.randint(10, 99)} orders")
