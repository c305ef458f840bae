"""The live service (FastAPI): sessions, streamed segments, predictions, a timeline page."""


def free_port() -> int:
    """A free TCP port on the loopback interface (for tests, benchmarks and ``--port 0`` users)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
