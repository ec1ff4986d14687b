"""`python -m stream_app` runs the segstream command line."""

from stream_app.cli import main

main()
