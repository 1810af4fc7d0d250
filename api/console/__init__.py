"""The operator web console, served by the lab service at ``/`` (the API stays under ``/api/v1``).

Server-rendered pages (Jinja2 templates in ``templates/``) with small plain JavaScript modules
(``static/``, no build step, no CDN) that call the same REST API as every other client:

- :mod:`api.console.session`: sign-in with an API token, kept in an HttpOnly, SameSite=Strict
  session cookie (never in a URL or in browser storage), and the CSRF token derived from it;
- :mod:`api.console.pages`: the pages (sign-in, overview, rigs, jobs, tokens) and the static files.

The API accepts the session cookie as well as a Bearer token; a state-changing request made
with the cookie must carry the page's CSRF token (``X-CSRF-Token``) and come from the
service's own origin, so another site cannot act with an operator's session.
"""
