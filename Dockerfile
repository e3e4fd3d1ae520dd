# heatmap-hub in a container: `docker build -t heatmap-hub .`, then
# `docker run -p 5000:5000 heatmap-hub serve --demo`, or deploy/compose.yaml for
# ingest, two web processes and Redis. docs/deploy.md has the rest.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hub ./hub
RUN python -m venv /opt/heatmap-hub \
    && /opt/heatmap-hub/bin/pip install --no-cache-dir .

FROM python:3.12-slim
RUN useradd --system --create-home --home-dir /var/lib/heatmap-hub heatmap-hub \
    && install -d -o heatmap-hub -g heatmap-hub /etc/heatmap-hub
COPY --from=build /opt/heatmap-hub /opt/heatmap-hub
COPY deploy/docker/entrypoint.sh /usr/local/bin/heatmap-hub-entrypoint
# In a container the hub must listen beyond loopback; serve without Redis keeps its
# history in the volume.
ENV PATH=/opt/heatmap-hub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=5000 \
    HEATMAP_DATA_DIR=/var/lib/heatmap-hub
USER heatmap-hub
WORKDIR /var/lib/heatmap-hub
VOLUME ["/var/lib/heatmap-hub", "/etc/heatmap-hub"]
EXPOSE 5000
# /health answers 200 while the process serves (ingest serves no HTTP: compose turns
# this off for it).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '5000'), timeout=4)"]
ENTRYPOINT ["heatmap-hub-entrypoint"]
CMD ["serve"]
