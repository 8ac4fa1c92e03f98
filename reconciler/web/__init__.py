"""Web: the pipeline pages, rendered by Jinja2 (`render`) and served by Starlette on uvicorn
(`server`); also `status --format html`'s self-contained export.

Read-only: the pages show what the application layer computed (`app.pages`), and
decide nothing.
"""
