"""The dashboard: server-rendered pages at `/`, offline docs, assets from pinned packages."""
