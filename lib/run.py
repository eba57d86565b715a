"""`python -m lib.run`: the batch runner's command (the runner itself is lib.running.runner).

python -m lib.run -f params/local.yaml [-p name value]... [--ds D] [--start-ds S] [--notebooks 01_ingest ...]
python -m lib.run --per-day --start-ds S --ds D [--force]      # the scheduler's way; resumable
"""

import sys

from lib.running.runner import main

if __name__ == "__main__":
    sys.exit(main())
