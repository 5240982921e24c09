"""``python -m mnist_net``: see mnist_net.cli."""

import sys

from .cli import main

sys.exit(main(prog="python -m mnist_net"))
