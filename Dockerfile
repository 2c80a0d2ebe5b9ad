# The shopstream worker image (used by docker-compose.yml and deploy/kubernetes/).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY streams ./streams
COPY models ./models
RUN pip install --no-cache-dir '.[rocksdb]' && useradd --uid 10001 --create-home shopstream \
    && mkdir /data && chown shopstream /data
USER 10001
ENV SHOPSTREAM_DATA_DIR=/data SHOPSTREAM_WEB_HOST=0.0.0.0
EXPOSE 6066
CMD ["shopstream", "worker"]
