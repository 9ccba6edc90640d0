"""Locust load test of /track, shaped like Tracardi's benchmark traffic.

Many sessions (200 by default) shared by all simulated users, a pool of returning
profiles (ids this system issued, learnt from the answers and sent with new sessions),
10-200 events per request, `options.profile: true` on some requests, in default mode
and in queue mode (the collector worker) as two tagged tasks.

    pip install -r bench/requirements-locust.txt     # optional, in a venv of its own
    locust -f bench/locustfile.py --headless -u 20 -r 5 -t 30s --host http://127.0.0.1:8000
    locust -f bench/locustfile.py --headless -u 20 -r 5 -t 30s --host ... --tags queue  # queue mode only

Settings (environment): TRACK_SOURCE (locust-test), TRACK_SESSIONS (200),
TRACK_PROFILES (100: returning profiles kept), TRACK_MIN_EVENTS (10), TRACK_MAX_EVENTS (200),
TRACK_PROFILE_SHARE (0.1: share of requests asking for the profile), TRACK_NEW_SESSION_SHARE
(0.05: share of requests that start a new session, half of them for a returning profile).
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

from locust import FastHttpUser, between, tag, task

SOURCE = os.environ.get("TRACK_SOURCE", "locust-test")
SESSIONS = int(os.environ.get("TRACK_SESSIONS", "200"))
PROFILES = int(os.environ.get("TRACK_PROFILES", "100"))
MIN_EVENTS = int(os.environ.get("TRACK_MIN_EVENTS", "10"))
MAX_EVENTS = int(os.environ.get("TRACK_MAX_EVENTS", "200"))
PROFILE_SHARE = float(os.environ.get("TRACK_PROFILE_SHARE", "0.1"))
NEW_SESSION_SHARE = float(os.environ.get("TRACK_NEW_SESSION_SHARE", "0.05"))

EVENT_TYPES = ("page-view", "product-view", "search", "add-to-cart", "checkout", "purchase", "identify")
CATEGORIES = ("shoes", "shirts", "bags", "hats", "socks")

# Shared by every simulated user of this process, as a site's visitors share its server.
sessions: list[str] = [str(uuid.uuid4()) for _ in range(SESSIONS)]
returning_profiles: list[str] = []


def event() -> dict[str, Any]:
    # A client id per event: what a real tracker sends so its retries are idempotent.
    return {
        "id": str(uuid.uuid4()),
        "type": random.choice(EVENT_TYPES),
        "properties": {
            "id": uuid.uuid4().hex[:8],
            "category": random.choice(CATEGORIES),
            "price": random.randint(1, 500),
        },
        "context": {"page": {"url": f"https://shop.example/{random.choice(CATEGORIES)}", "title": "Shop"}},
        "options": {"async": True},
    }


def pick_session() -> tuple[str, str | None]:
    """A session of the pool; sometimes a new one, half of those a returning visitor's."""
    index = random.randrange(len(sessions))
    profile = None
    if random.random() < NEW_SESSION_SHARE:
        sessions[index] = str(uuid.uuid4())
        if returning_profiles and random.random() < 0.5:
            profile = random.choice(returning_profiles)
    return sessions[index], profile


def remember_profile(profile_id: str) -> None:
    if len(returning_profiles) < PROFILES:
        returning_profiles.append(profile_id)
    else:
        returning_profiles[random.randrange(PROFILES)] = profile_id


def track_payload(*, queue: bool) -> dict[str, Any]:
    session_id, profile_id = pick_session()
    return {
        "source": {"id": SOURCE},
        "session": {"id": session_id},
        "profile": {"id": profile_id} if profile_id else None,
        "events": [event() for _ in range(random.randint(MIN_EVENTS, MAX_EVENTS))],
        "context": {},
        "options": {"queue": queue, "profile": random.random() < PROFILE_SHARE},
    }


class Visitor(FastHttpUser):
    wait_time = between(0.1, 0.5)

    def send(self, *, queue: bool) -> None:
        payload = track_payload(queue=queue)
        expected = 201 if queue else 200
        with self.client.post(
            "/track", json=payload, name=f"/track [{'queue' if queue else 'default'}]", catch_response=True
        ) as response:
            if response.status_code not in (expected, 200):
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            answer = response.json()
            if len(answer.get("events", [])) != len(payload["events"]):
                response.failure("not every event was accepted")
                return
            if answer.get("profile") and answer["profile"].get("id"):
                remember_profile(answer["profile"]["id"])

    @tag("default")
    @task
    def track_default(self) -> None:
        self.send(queue=False)

    @tag("queue")
    @task
    def track_queue(self) -> None:
        self.send(queue=True)
