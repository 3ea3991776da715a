"""What the state machine does next: polling decisions, per-video transfers, records and the manifest."""
