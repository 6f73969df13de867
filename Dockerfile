# The gateway as a container. The install is the Makefile's, command for command: a venv in .venv, pip upgraded,
# `pip install -e '.[test]'` — so what runs here is what `make run` runs and `make test` tested (tests/deploy checks).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ANSS_GATEWAY_HOST=0.0.0.0 \
    ANSS_GATEWAY_STATE_DIR=/var/lib/anss-gateway

RUN groupadd --system --gid 10001 gateway \
    && useradd --system --create-home --home-dir /app --uid 10001 --gid 10001 gateway \
    && mkdir -p /var/lib/anss-gateway && chown gateway:gateway /var/lib/anss-gateway
WORKDIR /app
COPY --chown=gateway:gateway . /app
USER gateway

RUN python -m venv .venv \
    && .venv/bin/python -m pip install --quiet --upgrade pip \
    && .venv/bin/python -m pip install --quiet -e '.[test]'

EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD .venv/bin/python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"

# Production: mount config/ and the PEM keys, set ANSS_GATEWAY_SIGNING_KEY_FILE and ANSS_GATEWAY_PSEUDONYM_KEY_FILE.
CMD [".venv/bin/anss-gateway", "serve"]
