# The segstream images, built from this repository as it is; every dependency installs from a
# wheel, and segstream's own wheel (its C extension, stream_app/_native.c) is built in a stage
# of the full python image, which has a compiler and the headers. Two targets:
#   worker  (the default; docker-compose.yml tags it segstream:latest): the worker and the
#           Kafka commands (topics, replay, tail, publish, probe), without the training stack
#   trainer (segstream-trainer:latest): the same plus pyproject.toml's `train` extra
# Wheels in docker/wheels/ are used first; it is empty in a fresh clone, and pip then takes
# everything from the package index. CI fills it on the host and builds with PIP_NO_INDEX=1
# and no network (scripts/compose-test). Only Dockerfile syntax the classic builder knows.
#
# The dependencies are installed at exactly the versions of uv.lock (exported by `make lock` to
# docker/requirements-worker.txt and docker/requirements-trainer.txt), in stages of their own,
# so a code change only reinstalls segstream itself on top of cached layers.

FROM python:3.11-slim AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
ARG PIP_NO_INDEX=0
COPY docker/wheels/ /wheels/
WORKDIR /src
COPY docker/requirements-worker.txt ./
RUN python3 -m venv /opt/segstream \
    && /opt/segstream/bin/pip install --find-links /wheels -r requirements-worker.txt \
    && rm -rf /src/*

FROM deps AS deps-train
# An ARG ends with its stage.
ARG PIP_NO_INDEX=0
COPY docker/requirements-trainer.txt ./
RUN /opt/segstream/bin/pip install --find-links /wheels -r requirements-trainer.txt \
    && rm -rf /src/*

# segstream's own files, built into a wheel that the two final stages install on top of the
# dependencies.
FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY schemas /src/schemas
COPY training /src/training
COPY stream_app /src/stream_app

# The full image: gcc, Python's headers and OpenSSL's (libssl-dev) build the C extension.
FROM python:3.11 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
ARG PIP_NO_INDEX=0
COPY docker/wheels/ /wheels/
COPY --from=source /src /src
RUN python3 -m venv /opt/build \
    && /opt/build/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["build-system"]["requires"]))' >/build-requires.txt \
    && /opt/build/bin/pip install --find-links /wheels -r /build-requires.txt \
    && /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist /src

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/segstream/bin:$PATH \
    SEGSTREAM_DATA_DIR=/var/lib/segstream \
    SEGSTREAM_WEB_HOST=0.0.0.0
RUN useradd --system --uid 10001 --home-dir /var/lib/segstream segstream \
    && mkdir -p /models /var/lib/segstream \
    && chown segstream /models /var/lib/segstream

FROM runtime AS trainer
COPY --from=deps-train /opt/segstream /opt/segstream
COPY --from=build /dist /dist
RUN pip install --no-deps /dist/*.whl && pip check && rm -rf /dist
USER segstream
RUN segstream --version
CMD ["segstream", "train", "--help"]

FROM runtime AS worker
COPY --from=deps /opt/segstream /opt/segstream
COPY --from=build /dist /dist
RUN pip install --no-deps /dist/*.whl && pip check && rm -rf /dist
USER segstream
RUN segstream --version
EXPOSE 6066
# /ready answers 200 once a valid model is live and the consumer runs.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["segstream", "probe"]
CMD ["segstream", "worker"]
