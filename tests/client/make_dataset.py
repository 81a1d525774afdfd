"""Writes a large, realistic collection file for full-sync benchmarks.

Usage: python make_dataset.py OUTPUT_PATH NOTES [SEED]

Runs in the current client's virtual environment (tests/support/mod.rs, `make_dataset`).
The client creates a fresh schema-18 collection (stock notetypes, default deck and options),
then notes, cards and revlog rows are inserted with plain SQL in one transaction: adding
100k notes through the client's note API would take minutes, and a benchmark needs only
rows a client accepts, not the client's bookkeeping for each one.

Shape: two cards per note ("Basic (and reversed card)"), five revlog rows per note, field
text of about 100-200 bytes, notes spread over ten nested decks and tagged from a small
pool. Row content depends only on NOTES and SEED; the collection's creation time and the
stock notetype's id come from the clock as in any new collection.

Prints one JSON line: {"notes", "cards", "revlog", "bytes", "seconds"}.
"""

import json
import os
import random
import sys
import time

from anki.collection import Collection
from anki.utils import base91, checksum

# Fixed epochs keep ids and modification times independent of when the file is generated.
NOTE_ID_BASE = 1_600_000_000_000  # ms
CARD_ID_BASE = 1_610_000_000_000  # ms; room for 5M notes' two cards below REVLOG_ID_BASE
REVLOG_ID_BASE = 1_650_000_000_000  # ms
MOD_TIME = 1_700_000_000  # s
REVLOGS_PER_NOTE = 5
DECKS = 10

WORDS = (
    "cell membrane protein enzyme nucleus gene river mountain treaty empire verb noun "
    "integral matrix vector theorem proof lemma café naïve über señal année straße "
    "photosynthesis mitochondria ribosome chromosome osmosis catalyst equilibrium "
    "revolution parliament monarchy republic dynasty harbour glacier volcano plateau"
).split()


def sentence(rng, min_bytes, max_bytes):
    target = rng.randint(min_bytes, max_bytes)
    words = []
    while len(" ".join(words).encode("utf-8")) < target:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def main():
    path, notes = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    started = time.monotonic()
    for leftover in [path, path + "-wal", path + "-shm"]:
        if os.path.exists(leftover):
            os.remove(leftover)

    col = Collection(path)
    rng = random.Random(seed)
    notetype = col.models.by_name("Basic (and reversed card)")
    decks = [col.decks.id(f"Dataset::Part {i:02}") for i in range(DECKS)]
    tag_pool = ["bench", "bench::big", "geo", "bio::cells", "hist", "math", "lang::fr", "ñ"]
    crt = col.db.scalar("select crt from col")
    today = (int(time.time()) - crt) // 86400

    note_rows, card_rows, revlog_rows = [], [], []
    for i in range(notes):
        nid = NOTE_ID_BASE + i
        text = f"{i} " + sentence(rng, 40, 90)
        # The sort field and checksum are of the first field without HTML: computed here
        # from the plain text, as the client's HTML stripping needs its i18n set up.
        front = f"<b>{text}</b>"
        back = sentence(rng, 60, 110)
        tags = rng.sample(tag_pool, rng.randint(0, 3))
        note_rows.append((
            nid, base91(rng.getrandbits(64)), notetype["id"], MOD_TIME, -1,
            f" {' '.join(sorted(tags))} " if tags else "",
            f"{front}\x1f{back}", text, int(checksum(text)[:8], 16), 0, "",
        ))
        did = decks[i % DECKS]
        for ord in range(2):
            cid = CARD_ID_BASE + i * 2 + ord
            state = rng.random()
            if state < 0.4:  # new
                ctype, queue, due, ivl, factor, reps, lapses = 0, 0, i, 0, 0, 0, 0
            elif state < 0.45:  # learning
                ctype, queue, due, ivl, factor, reps, lapses = (
                    1, 1, MOD_TIME + rng.randint(60, 3600), 0, 2500, rng.randint(1, 3), 0)
            else:  # review
                ivl = rng.randint(1, 400)
                ctype, queue, due, factor, reps, lapses = (
                    2, 2, today + rng.randint(-5, ivl), rng.choice([1300, 2100, 2500, 2800]),
                    rng.randint(2, 30), rng.randint(0, 4))
            if state > 0.98:
                queue = -1  # suspended
            flags = rng.choice([0] * 20 + [1, 2, 3, 4])
            card_rows.append((
                cid, nid, did, ord, MOD_TIME, -1, ctype, queue, due, ivl, factor, reps,
                lapses, 0, 0, 0, flags, "",
            ))
        for k in range(REVLOGS_PER_NOTE):
            ivl = rng.randint(1, 200)
            revlog_rows.append((
                REVLOG_ID_BASE + i * REVLOGS_PER_NOTE + k, CARD_ID_BASE + i * 2 + k % 2, -1,
                rng.choice([1, 2, 3, 3, 3, 4]), ivl, max(ivl // 2, 1), 2500,
                rng.randint(1500, 60000), rng.choice([0, 1, 1, 2]),
            ))

    def insert():
        col.db.executemany(f"insert into notes values ({','.join('?' * 11)})", note_rows)
        col.db.executemany(f"insert into cards values ({','.join('?' * 18)})", card_rows)
        col.db.executemany(f"insert into revlog values ({','.join('?' * 9)})", revlog_rows)
        # The tag list the client keeps beside the notes' own tag strings.
        col.db.executemany(
            "insert into tags (tag, usn, collapsed) values (?, -1, 0)", [[t] for t in tag_pool]
        )
        col.db.execute("update col set mod = ?", int(time.time() * 1000))

    col.db.transact(insert)
    counts = {
        "notes": col.note_count(),
        "cards": col.card_count(),
        "revlog": col.db.scalar("select count() from revlog"),
    }
    col.close()
    print(json.dumps({
        **counts,
        "bytes": os.path.getsize(path),
        "seconds": round(time.monotonic() - started, 2),
    }))


if __name__ == "__main__":
    main()
