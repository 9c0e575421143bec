"""The web dashboard: server-rendered pages under ``/ui/`` of the API (README, "Dashboard").

Served by ``rollout api`` (:func:`rollout.api.create_app` mounts :func:`dashboard`); works
offline: Jinja2 templates (autoescaped) packaged with this module, inline CSS, plots drawn as
inline SVG by matplotlib on the server, no JavaScript but a ``<meta http-equiv=refresh>``
while a rollout is active. Modules:

- :mod:`rollout.web.routes`       the pages and the verbs' forms
- :mod:`rollout.web.sessions`     login with an API token, the session cookie, CSRF
- :mod:`rollout.web.overview`     the overview's rows (bounded queries)
- :mod:`rollout.web.rollout_page` the rollout page's data, from stored evidence
- :mod:`rollout.web.sample`       the statistics of the page's per-arm sample
  (:mod:`rollout.store.page_samples`, which the manager keeps when a rollout finishes)
- :mod:`rollout.web.charts`       the SVG pictures
"""

from rollout.web.routes import dashboard

__all__ = ["dashboard"]
