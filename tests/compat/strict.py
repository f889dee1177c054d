"""The typed Python steel-sdk with strict response validation over every route bro serves.

`Steel(..., _strict_response_validation=True)` validates each answer against the SDK's
pydantic models (a `status` outside live/released/failed, a missing `message`, bytes where
JSON is typed: each fails here as it would for a user).

Usage: python strict.py <api base URL> <api key>. Prints one JSON line; exits 1 on failure.
Run by tests/it/compat.rs.
"""
import json
import sys
import time
import urllib.error
import urllib.request

import steel
from steel import Steel

base, key = sys.argv[1], sys.argv[2]
client = Steel(
    base_url=base, steel_api_key=key, max_retries=0, _strict_response_validation=True
)
facts = {}
PAGE = "data:text/html,<title>strict</title><h1>bro</h1><a href='https://example.test/x'>x</a>"


def fetch(url, with_key=True):
    """GET a URL bro handed out: (status, content type, bytes)."""
    req = urllib.request.Request(url, headers={"steel-api-key": key} if with_key else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers["content-type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["content-type"], err.read()


# Create with options, the object form of optimizeBandwidth among them.
a = client.sessions.create(
    api_timeout=120000,
    dimensions={"width": 800, "height": 600},
    user_agent="bro-strict/1",
    block_ads=True,
    device_config={"device": "desktop"},
    optimize_bandwidth={"block_images": True, "block_hosts": ["ads.example.test"]},
    session_context={
        "cookies": [{"name": "who", "value": "strict", "domain": "example.test", "path": "/"}]
    },
)
assert a.status == "live", a
assert a.timeout == 120000 and a.dimensions.width == 800, a
assert a.optimize_bandwidth.block_images is True, a.optimize_bandwidth
assert a.optimize_bandwidth.block_hosts == ["ads.example.test"], a.optimize_bandwidth
b = client.sessions.create(optimize_bandwidth={"block_media": True})
assert b.optimize_bandwidth.block_media is True, b

# Retrieve, list (auto-pagination, a status filter, a page size).
assert client.sessions.retrieve(a.id).id == a.id
seen = [s.id for s in client.sessions.list()]
assert a.id in seen and b.id in seen, seen
live = [s.id for s in client.sessions.list(status="live")]
assert a.id in live, live
page = client.sessions.list(limit=1)
assert len(page.sessions) == 1, page
facts["listed"] = len(seen)

# Live details and context.
details = client.sessions.live_details(a.id)
assert details.ws_url and len(details.pages) >= 1, details
context = client.sessions.context(a.id)
assert any(c.name == "who" and c.value == "strict" for c in context.cookies or []), context

# Files: upload, list, download, zip, delete one, delete all; an unknown session is 404.
up = client.sessions.files.upload(b.id, file=("hello.txt", b"hello files"), path="in/hello.txt")
assert up.path == "in/hello.txt" and up.size == 11, up
listed = client.sessions.files.list(b.id)
assert [f.path for f in listed.data] == ["in/hello.txt"], listed
got = client.sessions.files.download("in/hello.txt", session_id=b.id).read()
assert got == b"hello files", got
zipped = client.sessions.files.download_archive(b.id).read()
assert zipped[:2] == b"PK", zipped[:8]
client.sessions.files.delete("in/hello.txt", session_id=b.id)
client.sessions.files.upload(b.id, file=("again.txt", b"again"))
client.sessions.files.delete_all(b.id)
assert client.sessions.files.list(b.id).data == []
try:
    client.sessions.files.upload(
        "00000000-0000-4000-8000-000000000000", file=("x.txt", b"x" * 100_000)
    )
    raise AssertionError("an upload to an unknown session was taken")
except steel.NotFoundError as err:
    assert err.status_code == 404 and "message" in err.body, err.body

# Quick actions: JSON with URLs that bro serves (with the API key, as every route).
scraped = client.scrape(url=PAGE, format=["html", "markdown"], screenshot=True, pdf=True)
assert "<h1>bro</h1>" in scraped.content.html, scraped.content
assert isinstance(scraped.metadata.status_code, int), scraped.metadata
assert scraped.links and scraped.links[0].url == "https://example.test/x", scraped.links
shot = client.screenshot(url=PAGE, full_page=True)
pdf = client.pdf(url=PAGE)
for url, kind, magic in [
    (shot.url, "image/jpeg", b"\xff\xd8"),
    (pdf.url, "application/pdf", b"%PDF"),
    (scraped.screenshot.url, "image/jpeg", b"\xff\xd8"),
    (scraped.pdf.url, "application/pdf", b"%PDF"),
]:
    assert url.startswith(base + "/v1/artifacts/"), url
    status, ctype, body = fetch(url)
    assert (status, ctype, body[: len(magic)]) == (200, kind, magic), (url, status, ctype)
    # The URL is the credential, as Steel Cloud's are: it works without the key.
    assert fetch(url, with_key=False)[0] == 200, url
    stem, ext = url.rsplit(".", 1)
    guessed = stem[:-1] + ("0" if stem[-1] != "0" else "1") + "." + ext
    assert fetch(guessed, with_key=False)[0] == 404, guessed
# Asked for bytes, as steel-browser answers: the SDK's raw response.
raw = client.with_raw_response.screenshot(url=PAGE, extra_headers={"Accept": "image/jpeg"})
assert raw.headers["content-type"] == "image/jpeg" and raw.read()[:2] == b"\xff\xd8"
facts["screenshotBytes"] = len(fetch(shot.url)[2])
facts["pdfBytes"] = len(fetch(pdf.url)[2])

# A recorded session: its rrweb events, also paged through the Next-Cursor header. Its page
# is the browser's first (about:blank), which the recorder snapshots like any other.
# (`record` is bro's; steel-sdk 0.19 has no parameter for it.)
r = client.sessions.create(extra_body={"record": True})
assert r.to_dict().get("record") is True, r
events = []
for _ in range(100):
    events = client.sessions.events(r.id)
    if len(events) >= 2:
        break
    time.sleep(0.1)
assert isinstance(events, list) and len(events) >= 2, events
assert all(isinstance(e, dict) and "type" in e and "timestamp" in e for e in events), events
raw = client.sessions.with_raw_response.events(r.id, limit=1)
first, cursor = raw.parse(), raw.headers.get("next-cursor")
assert len(first) == 1 and first[0] == events[0] and cursor, (first, cursor)
rest = client.sessions.events(r.id, pointer=cursor)
assert rest[0] == events[1], rest[:1]
client.sessions.release(r.id)
assert len(client.sessions.events(r.id)) >= len(events)
assert client.sessions.events(b.id) == []  # did not record
facts["recordedEvents"] = len(events)

# Release one, then the rest; both answer `message`.
released = client.sessions.release(a.id)
assert released.success is True and released.message, released
assert client.sessions.retrieve(a.id).status == "released"
everything = client.sessions.release_all()
assert everything.success is True and everything.message, everything
assert client.sessions.retrieve(b.id).status == "released"
try:
    client.sessions.retrieve("00000000-0000-4000-8000-000000000000")
    raise AssertionError("an unknown session was found")
except steel.NotFoundError:
    pass

facts["status"] = client.sessions.retrieve(a.id).status
print(json.dumps(facts))
