# marketbot: `docker build -t marketbot .` then
#   docker run --rm -it -v marketbot-data:/data --env-file .env marketbot          (runs the bot)
#   docker run --rm marketbot replay deepseek-2025-01-27                            (the demo)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MARKETBOT_DATABASE_URL=sqlite:////data/marketbot.db

RUN useradd --create-home --uid 10001 marketbot \
    && mkdir /data && chown marketbot:marketbot /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY alerts ./alerts
COPY bot ./bot
COPY config ./config
RUN pip install '.[postgres]'

USER marketbot
WORKDIR /data
VOLUME ["/data"]
ENTRYPOINT ["marketbot"]
CMD ["run"]
