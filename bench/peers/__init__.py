"""Programs the bench runs in virtualenvs of their own (bench/.venvs/), never in the product's.

The peers the worker is compared with (`quix_app.py`, `confluent_passthrough.py`) and the
harness's own librdkafka clients (`probe.py`) run as scripts from `bench/.venvs/<name>`,
created by `bench.venvs` from the `requirements-<name>.txt` files here: segstream itself does
not depend on Quix Streams.
"""
