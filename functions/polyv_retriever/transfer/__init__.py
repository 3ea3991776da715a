"""How a byte gets from Polyv's CDN into S3: allow-listed, ranged, parallel, bounded, verified, resumable."""
