"""The grading service: students hand in notebooks in a browser (or through the API, `grade
submit`, `submit()`), a queue grades them the way `grade batch` does, everyone reads feedback.

- store.py: the service's SQLite database (WAL): users, tokens, attempts, the queue, results
- auth.py: access tokens (stored hashed), signed session cookies, CSRF tokens
- people.py: the roster imported, tokens issued, instructors added
- policy.py: each assignment's dates, late policy, submission limit, size limit, counted attempt
- core.py: accepting or refusing an upload; feedback, dashboard and exports from the batch's renderers
- pages.py: the service's own HTML pages (no inline script; static/app.js is the one script)
- openapi.py: the JSON API's OpenAPI description
- app.py: the Starlette application: pages and JSON API
- worker.py: the grading worker process (the batch's grading path, warm kernels)
- supervisor.py: the worker started, watched, restarted; its jobs taken back when it dies
- server.py: `grade serve`: all of the above under uvicorn
- client.py: `grade submit` and `submit()` in a notebook (standard library only)
- lti_store.py: the LTI 1.3 tables (platforms, keys, states and nonces, links, passbacks)
- lti_tokens.py: the tool's keys and JWKS, the launch's id_token checked, the JWTs it signs
- lti_app.py: the LTI routes: login initiation, launch, Deep Linking, JWKS, configuration
- lti_passback.py: grades back to the LMS by AGS, retried with backoff, sent once
- lti_roster.py: the course's roster from the LMS by NRPS
"""
