"""The operator page at /ui: every model, version and rollout, live, with admin actions.

`router.py` serves the page and its assets (shipped in `static/`, no build step, no CDN) and a
read-only JSON state; `state.py` shapes that state from a `UiSource` reading (pure);
`source.py` defines the reader interface and today's adapter over the registry.
"""
