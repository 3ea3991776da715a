"""The Lambda entry points: parse the event, call the core, shape the result. Nothing else lives here."""
