"""A thread that spins on the CPU for ever, next to one that sleeps."""
import threading
import time

threading.Thread(target=time.sleep, args=(600,), name="sleeper", daemon=True).start()
print("ready", flush=True)
count = 0
while True:
    count += 1  # spins here
