"""A program with a cleanup helper, started the way Python's resource tracker is started (and
named so on its command line, which is how hangwatch recognises one), but whose cleanup takes
as long as the test says.

    cleanup_helper.py SECS DONEFILE

The program starts the helper and exits 0 at once. The helper ignores TERM and INT, waits for
end-of-file on a pipe that only the program holds (that is, for the program's exit), works for
SECS, creates DONEFILE and exits. Prints `ready <pid> <helper pid>` before exiting.
"""

import os
import subprocess
import sys

secs, done = float(sys.argv[1]), sys.argv[2]
read_end, write_end = os.pipe()
helper = (
    "import os, signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    f"os.read({read_end}, 1)\n"
    f"time.sleep({secs})\n"
    f"open({done!r}, 'w').close()\n"
    "# as Python starts its own: from multiprocessing.resource_tracker import main\n"
)
process = subprocess.Popen([sys.executable, "-c", helper], pass_fds=[read_end])
os.close(read_end)
print("ready", os.getpid(), process.pid, flush=True)
