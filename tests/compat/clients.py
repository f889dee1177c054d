"""The real Python steel-sdk (PyPI) against a bro daemon: create, list, release.

Usage: python clients.py <api base URL> <api key>. Prints one JSON line; exits 1 on failure.
Run by tests/it/compat.rs.
"""
import json
import sys

from steel import Steel

base, key = sys.argv[1], sys.argv[2]
client = Steel(base_url=base, steel_api_key=key, max_retries=0)

session = client.sessions.create(api_timeout=60000, dimensions={"width": 640, "height": 480})
assert session.status == "live", session
assert session.timeout == 60000, session
assert f"sessionId={session.id}" in session.websocket_url, session.websocket_url

ids = [s.id for s in client.sessions.list()]
assert session.id in ids, ids

released = client.sessions.release(session.id)
assert released.status == "released", released
again = client.sessions.retrieve(session.id)
assert again.status == "released", again

print(json.dumps({"id": session.id, "listed": len(ids), "status": again.status}))
