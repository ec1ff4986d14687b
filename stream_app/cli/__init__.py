"""The `segstream` program: the one command line over the stream app and training.

It sits above both packages: `stream_app.cli.training` imports `training` only inside the
commands that need it, so a worker installed without the `train` extra runs every other
command.
"""

from stream_app.cli.main import WEB_PORT_FILE, app, main

__all__ = ["WEB_PORT_FILE", "app", "main"]
