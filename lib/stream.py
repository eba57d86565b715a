"""`python -m lib.stream`: real-time minute bars from the websocket feed into minute_bars (lib.ingestion.stream).

    python -m lib.stream -f params/local.yaml [-p NAME VALUE ...] [--symbols AM.*] [--for-seconds N]
"""

import sys

from lib.ingestion.stream import main

if __name__ == "__main__":
    sys.exit(main())
