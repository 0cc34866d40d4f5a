"""``python -m hangwatch ARGS``: the installed binary, with the same arguments and exit status."""

import os
import sys

from hangwatch import find_hangwatch_bin


def main():
    binary = find_hangwatch_bin()
    # exec, not a child: signals reach hangwatch directly and its exit status is the status.
    os.execv(binary, [binary, *sys.argv[1:]])


if __name__ == "__main__":
    main()
