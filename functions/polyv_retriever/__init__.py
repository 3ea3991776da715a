"""polyv-retriever: Polyv source files into your own S3 bucket.

The core (``polyv``, ``transfer``, ``pipeline``) knows nothing of Lambda; ``handlers`` and ``cli`` are the
two thin fronts over it.
"""
