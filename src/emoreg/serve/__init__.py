"""The live service (FastAPI): sessions, streamed segments, predictions, a timeline page."""
