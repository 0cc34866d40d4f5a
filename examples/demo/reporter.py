"""A healthy service: reports now and then, then finishes."""

import time

for n in range(1, 11):
    print(f"report {n}: all good")
    time.sleep(1)
