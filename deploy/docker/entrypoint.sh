#!/bin/sh
# The container's entrypoint: a hub command or option runs `heatmap-hub` (so
# `docker run IMAGE web --port 5001` and `docker compose run web keys add desk` work);
# anything else runs as given (`docker run -it IMAGE sh`). exec: SIGTERM reaches the
# hub itself, which closes its clients with 1001 and exits 0.
set -e
case "${1:-}" in
    serve|ingest|web|record|keys|-*)
        exec heatmap-hub "$@"
        ;;
    "")
        exec heatmap-hub serve
        ;;
    *)
        exec "$@"
        ;;
esac
