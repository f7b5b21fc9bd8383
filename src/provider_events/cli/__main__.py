import sys

from provider_events.cli import main

sys.exit(main())
