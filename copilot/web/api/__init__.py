"""The JSON API for scripts (django-ninja): ``/api/``, with ``/api/docs`` and its schema.

main.py     the NinjaAPI: auth, parser, error handlers, docs; URLs in urls.py
jobs.py     the operations (a Router)
schemas.py  what they answer, and the list's query parameters
auth.py     bearer token, or session plus CSRF
body.py     a body's type, size, depth and JSON
errors.py   the two error shapes and every handler
"""
