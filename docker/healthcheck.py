"""Container health check of a revisit service: GET /healthz on REVISIT_METRICS_PORT.

Exit 0 when the service says it is healthy (HTTP 200), 1 otherwise. Only the standard
library: the service images have no curl.
"""

import os
import sys
import urllib.error
import urllib.request

URL = f"http://127.0.0.1:{os.environ.get('REVISIT_METRICS_PORT', '9100')}/healthz"
try:
    with urllib.request.urlopen(URL, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except (urllib.error.URLError, OSError):
    sys.exit(1)
