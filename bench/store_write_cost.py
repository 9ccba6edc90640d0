"""The CPU of the database store's writes: its prepared statements (storage/backends/database.py
insert_rows and update_rows, what the store uses) against the ORM's bulk_create and
bulk_update of the same rows (what it used before).

On SQLite these writes run inside the background worker's transactions, which hold the one
write lock that every /track publish waits for: what they cost is time the API cannot
publish in. In one process, no server, on a fresh database: alternating rounds, each writing
--profiles profile rows (full documents and windows of applied ids, as a long run has them)
and as many session rows, updated, and --events new event rows, each kind in a transaction
of its own (commit and log sync included). The figure is process CPU per round.

    .venv/bin/python bench/store_write_cost.py [--rounds 5] [--profiles 100] [--events 1000]
"""

from __future__ import annotations

import argparse
import time
import uuid

from benchlib import add_common_arguments, figure, median, prepare, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profiles", type=int, default=100, help="profile and session rows updated per round")
    parser.add_argument("--events", type=int, default=1000, help="event rows inserted per round")
    add_common_arguments(parser)
    args = parser.parse_args()
    if args.stack != "embedded":
        parser.error("the write lock this protects is SQLite's: run with --stack embedded")
    prepare("bench-store-write", args.stack)

    from django.db import transaction
    from django.utils import timezone

    from storage.backends.database import insert_rows, update_rows
    from storage.documents import APPLIED_EVENTS_KEPT, APPLIED_JOBS_KEPT, SLOT, Window, new_profile
    from storage.models import EventRecord, ProfileRecord, SessionRecord

    now = timezone.now()
    stamp = now.isoformat()
    # Full windows of applied ids: what every profile holds after a long run.
    jobs = Window.read([str(uuid.uuid4()) for _ in range(APPLIED_JOBS_KEPT)]).stored()
    events_seen = Window.read([str(uuid.uuid4()) for _ in range(APPLIED_EVENTS_KEPT)]).stored()
    assert len(jobs[0]) > APPLIED_JOBS_KEPT * SLOT
    profiles = [
        ProfileRecord(id=f"p{i}", document=new_profile(f"p{i}", now=stamp), applied_jobs=jobs,
                      applied_events=events_seen, created_at=now, updated_at=now)
        for i in range(args.profiles)
    ]  # fmt: skip
    session_document = {"metadata": {"time": {"insert": stamp}}, "source": {"id": "bench"}, "properties": {}}
    sessions = [
        SessionRecord(id=f"s{i}", profile_id=f"p{i}", source_id="bench", document=session_document,
                      created_at=now, updated_at=now)
        for i in range(args.profiles)
    ]  # fmt: skip
    ProfileRecord.objects.bulk_create(profiles)
    SessionRecord.objects.bulk_create(sessions)

    def events() -> list[EventRecord]:
        rows = []
        for _ in range(args.events):
            event_id = str(uuid.uuid4())
            document = {"id": event_id, "type": "page-view", "properties": {"category": "demo"},
                        "metadata": {"time": {"insert": stamp}}, "source": {"id": "bench"}}  # fmt: skip
            rows.append(EventRecord(id=event_id, type="page-view", profile_id="p1", session_id="s1",
                                    source_id="bench", time=now, document=document))  # fmt: skip
        return rows

    def through_orm(new_events: list[EventRecord]) -> None:
        with transaction.atomic():
            ProfileRecord.objects.bulk_update(profiles, ["document", "applied_jobs", "applied_events", "updated_at"])
        with transaction.atomic():
            SessionRecord.objects.bulk_update(sessions, ["document", "profile_id", "updated_at"])
        EventRecord.objects.bulk_create(new_events, ignore_conflicts=True)

    def prepared(new_events: list[EventRecord]) -> None:
        with transaction.atomic():
            update_rows(ProfileRecord, profiles, ["document", "applied_jobs", "applied_events", "updated_at"])
        with transaction.atomic():
            update_rows(SessionRecord, sessions, ["document", "profile_id", "updated_at"])
        insert_rows(EventRecord, new_events, ignore_conflicts=True)

    ways = {"orm": through_orm, "prepared": prepared}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for index in range(args.rounds):
        for name, write in ways.items() if index % 2 == 0 else reversed(ways.items()):
            new_events = events()
            started = time.process_time()
            write(new_events)
            cpu[name].append((time.process_time() - started) * 1000)
        print(f"round {index + 1}: " + ", ".join(f"{name} {cpu[name][-1]:.1f} ms" for name in ways), flush=True)
    stored = EventRecord.objects.count()
    if stored != 2 * args.rounds * args.events:
        raise SystemExit(f"bench: {stored} event rows, expected {2 * args.rounds * args.events}")
    ratios = [new / old for new, old in zip(cpu["prepared"], cpu["orm"], strict=True)]
    report(
        [
            figure(f"store writes of {args.profiles} profiles, {args.profiles} sessions, {args.events} events, "
                   "prepared (ms CPU)", median(cpu["prepared"]), "ms", baseline=median(cpu["orm"]),
                   baseline_label="ORM bulk", ratio=median(ratios), target=("<=", 0.8))
        ],
        args.json,
        cpu_ms=cpu,
    )  # fmt: skip


if __name__ == "__main__":
    main()
