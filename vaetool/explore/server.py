"""Serving the explorer: check the web extra, load the model, hold the port, run uvicorn until Ctrl-C."""
from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vaetool.errors import VaetoolError

EXTRA_MESSAGE = ('vaetool explore needs its web server, the optional extra "explore": pip install "vaetool[explore]" '
                 '(from a checkout of vaetool: pip install ".[explore]").')


def require_web() -> None:
    """A clear sentence, instead of an ImportError, when the ``explore`` extra is not installed."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise VaetoolError(EXTRA_MESSAGE) from exc


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); one sentence if it cannot be had."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise VaetoolError(f"Cannot serve on host {host!r}: {exc.strerror}.") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise VaetoolError(f"Port {port} on {host} is already in use (another vaetool explore?); "
                               f"choose another with --port, e.g. --port {port + 1}.") from exc
        if exc.errno == errno.EACCES:
            raise VaetoolError(f"Not allowed to listen on port {port} of {host}; choose a port above 1023 "
                               "with --port.") from exc
        raise VaetoolError(f"Cannot listen on {host}:{port} ({exc.strerror}); choose another --host or --port.") from exc
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(model, model_file: str | Path, *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True,
          data_dir: str | Path | None = None, threads: int | None = None, say: Callable[[str], None] = print,
          warn: Callable[[str], None] = print) -> None:
    """Serve the explorer for ``model`` until Ctrl-C (or SIGTERM), then return; the model computes
    with ``threads`` CPU threads (default: torch's).

    The port is taken before anything else happens, so a busy port is reported at once; the
    browser, when asked for, opens on the page once the server listens.
    """
    require_web()
    import uvicorn

    from vaetool.explore.app import create_app
    from vaetool.explore.explorer import Explorer

    sock = bind(host, port)
    if not is_loopback(host):
        warn(f"Warning: serving on {host}, which other machines may reach; the explorer has no login, "
             "so anyone who can reach it can use it.")
    url = url_of(sock)
    # On a loopback address only requests for a loopback name are served: a web page elsewhere cannot
    # reach the explorer by pointing a name of its own at 127.0.0.1 (DNS rebinding).
    named = host if ":" not in host else f"[{host}]"
    allowed = list(dict.fromkeys(["localhost", "127.0.0.1", "[::1]", named])) if is_loopback(host) else None
    app = create_app(Explorer(model, model_file, data_dir), threads, allowed_hosts=allowed)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    say(f"Exploring {model_file} at {url}  (Ctrl-C stops)")
    if open_browser:
        # A daemon thread: some browsers block the caller until they exit.
        threading.Thread(target=_open, args=(url, say), daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down gracefully, then passes the Ctrl-C on
        pass
    finally:
        sock.close()
    say("Stopped.")


@contextmanager
def running(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """``app`` served by uvicorn in a background thread while the block runs; yields its address.

    For tests, benchmarks and scripts that drive the page; the command itself uses :func:`serve`.
    """
    require_web()
    import uvicorn

    sock = bind(host, port)
    live = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=live.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not live.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The explorer's server did not start.")
            time.sleep(0.02)
        yield url_of(sock)
    finally:
        live.should_exit = True
        thread.join(10)
        sock.close()


def _open(url: str, say: Callable[[str], None]) -> None:
    if not webbrowser.open(url):
        say(f"No browser could be opened here; open {url} yourself.")
