# The segstream program: trainer, topic setup and worker all run this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SEGSTREAM_DATA_DIR=/var/lib/segstream \
    SEGSTREAM_WEB_HOST=0.0.0.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY training ./training
COPY stream_app ./stream_app
RUN pip install . \
    && useradd --system --uid 10001 segstream \
    && mkdir -p /models /var/lib/segstream \
    && chown segstream /models /var/lib/segstream
USER segstream

EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('SEGSTREAM_WEB_PORT', '6066'), timeout=2)"
CMD ["segstream", "worker"]
