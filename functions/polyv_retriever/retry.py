"""The one backoff policy of the project's own retries (the Polyv client and the download source).

Capped exponential backoff with full jitter (the AWS Architecture Blog's "full jitter": a delay drawn
uniformly from zero to the capped exponential), so that many workers that failed together do not come back
together. A server's ``Retry-After`` is honoured when it is longer than the drawn delay; one longer than the
cap is not slept through (the caller gives up and leaves the wait to its own caller, e.g. the state
machine's Retry).

Every retry is logged at WARNING with what failed, why, the attempt and the delay, so that an operator can
see why a transfer or a poll was slow. The URL in that line never has its query string: for a signed
download URL and a signed Polyv request, the query is the credential.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from polyv_retriever.observability import metric

logger = logging.getLogger("polyv_retriever.retry")


def without_query(url: str) -> str:
    """``scheme://host/path``: what of a URL may appear in a log line or an error."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


@dataclass(frozen=True)
class Backoff:
    #: Tries in all, the first included: ``attempts=5`` is one try and four retries.
    attempts: int = 5
    base_seconds: float = 0.5
    cap_seconds: float = 20.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``attempt``-th failed try (1-based)."""
        backoff = random.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))
        return max(backoff, retry_after or 0.0)

    def pause(
        self,
        attempt: int,
        *,
        url: str,
        reason: object,
        retry_after: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> bool:
        """After the ``attempt``-th failed try: log and sleep, then True (try again); or False when the tries
        are spent or the server asks for a wait longer than the cap (then the caller raises)."""
        if attempt >= self.attempts or (retry_after or 0.0) > self.cap_seconds:
            return False
        seconds = self.delay(attempt, retry_after)
        logger.warning(
            "retrying %s in %.2f s (attempt %d of %d failed: %s)",
            without_query(url),
            seconds,
            attempt,
            self.attempts,
            reason,
            extra={
                "retry_url": without_query(url),
                "retry_attempt": attempt,
                "retry_delay_seconds": round(seconds, 3),
                "retry_reason": str(reason),
            },
        )
        # Counted by the error's name (a low-cardinality dimension), never by URL.
        metric("Retries", 1, Reason=getattr(reason, "name", type(reason).__name__))
        sleep(seconds)
        return True
