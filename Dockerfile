# marketbot image. Build: `docker build -t marketbot .`  Run the stack: `docker compose up`
# (compose.yaml: PostgreSQL, the bot, a delivery worker). Alone, on SQLite in the /data volume:
#   docker run -d -v marketbot-data:/data --env-file .env marketbot            (the bot)
#   docker run --rm marketbot replay deepseek-2025-01-27                       (the demo)

# --- build: a virtualenv with the dependencies, then marketbot itself (no source in the image)
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/marketbot
ENV PATH=/opt/marketbot/bin:$PATH
WORKDIR /src

# Dependencies in their own layer, read from pyproject.toml alone: a change to the source
# does not reinstall them, only a change to the dependency list does.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt

COPY README.md LICENSE ./
COPY alerts ./alerts
COPY bot ./bot
# Non-editable, without touching the dependencies installed above.
RUN pip install --no-cache-dir --no-deps .

# --- runtime: the virtualenv only, as a non-root user
FROM python:3.11-slim

ENV PATH=/opt/marketbot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MARKETBOT_DATABASE_URL=sqlite:////data/marketbot.db \
    MARKETBOT_METRICS_PORT=9464

RUN groupadd --gid 10001 marketbot \
    && useradd --create-home --uid 10001 --gid 10001 marketbot \
    && mkdir /data && chown marketbot:marketbot /data
COPY --from=build /opt/marketbot /opt/marketbot
COPY config /opt/marketbot/config

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9464 3000

# /healthz answers 200 when the event loop answers and the bot is ready (database reachable,
# data fresh where a market is open, leader or standby); urlopen raises on 503 or no answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MARKETBOT_METRICS_PORT', '9464'), timeout=4)"]

ENTRYPOINT ["marketbot"]
CMD ["run"]
