"""Jupyter integration: the server extension behind the JupyterLab panel, and the IPython magics.

The JupyterLab extension (built from ``labextension/``) ships in the wheel as a prebuilt
extension; its REST API lives in :mod:`nbtools.jupyter.handlers`. ``%load_ext nbtools``
registers the magics of :mod:`nbtools.jupyter.magics`.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbtools.jupyter"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Add the nbtools REST API to a running Jupyter server."""
    from nbtools.jupyter.handlers import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("nbtools: pipeline API at /nbtools/api/")
