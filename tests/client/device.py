"""One simulated Anki device, driven by the end-to-end tests (tests/support/mod.rs).

Owns one collection and the official client's sync calls on it. Runs inside a virtual
environment holding one version of the `anki` package: a current (sync v11) client or the
legacy 2.1.49 (sync v10) client; the differences are feature-detected below.

Usage: python device.py COLLECTION_PATH

Protocol: one JSON request per line on stdin, `{"cmd": NAME, "args": {...}}` where NAME is
a public method of Device below, answered by one JSON line on stdout:
  {"ok": RESULT}                         success
  {"failure": {"kind": K, "message": M}} a sync call failed the way the client reports it
  {"error": TRACEBACK}                   anything else (a bug in a test or in this driver)
The process ends at the end of its input (or is killed by the harness).
"""

import hashlib
import ipaddress
import json
import os
import random
import shutil
import sys
import time
import traceback
from urllib.parse import urlsplit

# The JSON channel is a private copy of stdout; fd 1 itself is pointed at stderr so that
# anything the anki package or its Rust backend prints cannot corrupt the channel.
_channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)

from anki.collection import Collection  # noqa: E402
from anki.errors import NetworkError, SyncError  # noqa: E402
from anki.sync_pb2 import SyncAuth  # noqa: E402

# v11 clients take the endpoint as an argument (and keep it in SyncAuth); the legacy client
# reads it from the environment on every sync call.
V11 = "endpoint" in SyncAuth.DESCRIPTOR.fields_by_name

NOTE_COLUMNS = ["id", "guid", "mid", "mod", "usn", "tags", "flds"]
CARD_COLUMNS = [
    "id", "nid", "did", "ord", "mod", "usn", "type", "queue", "due", "ivl",
    "factor", "reps", "lapses", "left", "odue", "odid", "flags", "data",
]
REVLOG_COLUMNS = ["id", "cid", "usn", "ease", "ivl", "lastIvl", "factor", "time", "type"]
# Collection config keys that add_rich_content sets and dump reports: a string with
# non-ASCII text, a list, a nested object and a stock key the client itself reads.
CONFIG_KEYS = ["e2eText", "e2eList", "e2eObject", "sortBackwards"]
# Columns of the single `col` row that a full sync carries over unchanged. Left out, as they
# differ between uploader and downloader even with the official server: `usn` (the server
# hands out a new one on download and on every sync), `mod` and `ls` (each device's own
# last change and sync time). `ver` is left out as every client opens files as schema 18.
COL_COLUMNS = ["crt", "scm"]


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SyncFailure(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Device:
    def __init__(self, path):
        self.path = path
        self.col = Collection(path)
        self.endpoint = None
        self.hkey = None

    # -- sync plumbing -------------------------------------------------------------------

    def _set_endpoint(self, endpoint):
        # Tests talk only to servers on this machine; a client with a missing or bad
        # endpoint may fall back to AnkiWeb. v11 clients take any address a user may type
        # (`http://host/anki` too); the legacy endpoint is built by appending to it.
        if not is_loopback(urlsplit(endpoint).hostname):
            raise ValueError(f"not a loopback endpoint: {endpoint!r}")
        if not (V11 or endpoint.endswith("/")):
            raise ValueError(f"a legacy endpoint must end in '/': {endpoint!r}")
        self.endpoint = endpoint

    def _auth(self):
        if self.hkey is None:
            raise RuntimeError("not logged in: call login or set_host_key first")
        if self.endpoint is None:
            raise RuntimeError("no endpoint: call login or set_endpoint first")
        if V11:
            return SyncAuth(hkey=self.hkey, endpoint=self.endpoint)
        self._export_legacy_endpoint()
        return SyncAuth(hkey=self.hkey)

    def _export_legacy_endpoint(self):
        os.environ["SYNC_ENDPOINT"] = self.endpoint + "sync/"
        os.environ["SYNC_ENDPOINT_MEDIA"] = self.endpoint + "msync/"

    def _client_call(self, fn):
        """Runs one call into the sync client, turning the client's own errors into
        SyncFailure (reported to the test) and leaving anything else to crash loudly."""
        try:
            return fn()
        except SyncError as e:
            raise SyncFailure(e.kind.name, str(e)) from e
        except NetworkError as e:
            raise SyncFailure("NETWORK", str(e)) from e
        except Exception as e:
            if type(e).__module__ == "anki.errors":
                raise SyncFailure(type(e).__name__, str(e)) from e
            raise

    def _in_sync_window(self, fn):
        """Runs a normal sync call the way this client version's GUI does."""
        if not V11:
            # The 2.1.49 Python layer keeps a transaction open at all times; the backend
            # needs it committed before a sync and a new one begun after.
            self.col.save(trx=False)
        try:
            return self._client_call(fn)
        finally:
            if not V11:
                self.col.db.begin()
            # Notetypes may have changed underneath the Python layer's cache.
            self.col._clear_caches()

    def _full_sync(self, upload):
        auth = self._auth()
        self.col.close_for_full_sync()
        try:
            if V11:
                self._client_call(
                    lambda: self.col.full_upload_or_download(
                        auth=auth, server_usn=None, upload=upload
                    )
                )
            elif upload:
                self._client_call(lambda: self.col.full_upload(auth))
            else:
                self._client_call(lambda: self.col.full_download(auth))
        finally:
            # The backend reopens the collection itself, whether or not the transfer
            # worked; the Python layer must reattach either way (2.1.49's reopen also
            # begins the transaction its Python layer expects).
            self.col.reopen(after_full_sync=True)

    # -- commands --------------------------------------------------------------------------

    def login(self, user, password, endpoint):
        self._set_endpoint(endpoint)
        if V11:
            auth = self._client_call(lambda: self.col.sync_login(user, password, endpoint))
        else:
            self._export_legacy_endpoint()
            auth = self._client_call(lambda: self.col.sync_login(user, password))
        self.hkey = auth.hkey

    def set_endpoint(self, endpoint):
        self._set_endpoint(endpoint)

    def host_key(self):
        return self.hkey

    def set_host_key(self, hkey):
        self.hkey = hkey

    def sync(self):
        auth = self._auth()
        out = self._in_sync_window(lambda: self.col.sync_collection(auth, False) if V11
                                   else self.col.sync_collection(auth))
        # A server may move the client with a 308 on meta; the GUI then keeps the new
        # endpoint for later syncs, so the device does too.
        if V11 and out.new_endpoint:
            self._set_endpoint(out.new_endpoint)
        return {
            "required": type(out).ChangesRequired.Name(out.required),
            "server_media_usn": out.server_media_usn if V11 else None,
            "server_message": out.server_message,
        }

    def full_upload(self):
        self._full_sync(upload=True)

    def full_download(self):
        self._full_sync(upload=False)

    def add_notes(self, n, prefix):
        notetype = self.col.models.by_name("Basic")
        ids = []
        for i in range(n):
            note = self.col.new_note(notetype)
            note["Front"] = f"{prefix} {i} front"
            note["Back"] = f"{prefix} {i} back"
            self.col.add_note(note, 1)
            ids.append(note.id)
        return ids

    def add_rich_content(self, label):
        """What a real user's collection holds, with `label` in every note so two devices'
        collections differ. Returns the number of notes added."""
        col = self.col
        for key, value in self._config_values(label).items():
            col.set_config(key, value)

        # A custom notetype: four fields, two templates, custom css.
        models = col.models
        vocab = models.new("Vocab")
        for name in ["Word", "Meaning", "Example", "Notes"]:
            models.add_field(vocab, models.new_field(name))
        for name, qfmt, afmt in [
            ("Recognition", "<div class=word>{{Word}}</div>",
             "{{FrontSide}}<hr id=answer>{{Meaning}}<br><i>{{Example}}</i>"),
            ("Production", "{{Meaning}}", "{{FrontSide}}<hr id=answer>{{Word}}<br>{{Notes}}"),
        ]:
            template = models.new_template(name)
            template["qfmt"] = qfmt
            template["afmt"] = afmt
            models.add_template(vocab, template)
        vocab["css"] = ".card { font-family: 'Noto Serif'; color: #223; }\n.word { font-size: 2em; }"
        vocab = models.get(models.add_dict(vocab).id)

        # Nested decks, one with deck options that differ from the defaults.
        spanish = col.decks.id("Languages::Spanish")
        french = col.decks.id("Languages::Français")
        cells = col.decks.id("Science::Biology::Cells")
        options = col.decks.add_config("Intensive")
        options["new"]["perDay"] = 37
        options["new"]["delays"] = [2.0, 15.0, 90.0]
        options["rev"]["perDay"] = 333
        options["lapse"]["leechFails"] = 5
        options["maxTaken"] = 90
        col.decks.update_config(options)
        col.decks.set_config_id_for_deck_dict(col.decks.get(spanish), options["id"])

        added = 0

        def add(notetype, deck, fields, tags):
            nonlocal added
            note = col.new_note(notetype)
            for name, value in fields.items():
                note[name] = value
            note.tags = tags
            col.add_note(note, deck)
            added += 1
            return note

        words = [("el perro", "the dog"), ("la manzana", "the apple"), ("el niño", "the boy"),
                 ("la canción", "the song"), ("el árbol", "the tree"), ("la llave", "the key")]
        for i, (word, meaning) in enumerate(words):
            add(vocab, spanish,
                {"Word": word, "Meaning": meaning, "Example": f"{label}: Veo {word}.",
                 "Notes": f"<b>{label}</b> #{i}"},
                ["lang::es", "vocab::nouns", "señal"] + (["leech"] if i == 0 else []))
        for i, (word, meaning) in enumerate([("le château", "the castle"), ("l'été", "summer")]):
            add(vocab, french,
                {"Word": word, "Meaning": meaning, "Example": f"{label} {i}", "Notes": ""},
                ["lang::fr", "日本語::タグ"])
        cloze = models.by_name("Cloze")
        for i, text in enumerate([
            "The {{c1::mitochondrion}} is the {{c2::powerhouse}} of the cell",
            "{{c1::Ribosomes}} make {{c2::proteins}}; {{c3::DNA}} stores the plan",
        ]):
            add(cloze, cells, {"Text": text, "Back Extra": f"{label} cloze {i}"},
                ["science::biology"])
        basic = models.by_name("Basic")
        for i in range(3):
            add(basic, 1, {"Front": f"{label} basic {i} ✓", "Back": f"answer {i} — ok"}, [])

        # Study some cards with different answers, so revlog rows and scheduled cards exist.
        col.decks.select(col.decks.id("Languages"))
        self._reset_scheduler()
        for ease in [3, 1, 4, 2, 3, 3, 1, 4]:
            card = col.sched.getCard()
            if card is None:
                break
            col.sched.answerCard(card, ease)
            self._reset_scheduler()

        # One suspended and one flagged card, both among cards never studied.
        untouched = col.find_cards('"deck:Science::Biology::Cells"')
        col.sched.suspend_cards(untouched[:1])
        col.set_user_flag_for_cards(3, untouched[1:2])
        return added

    # -- small edits, as a user makes them between syncs -------------------------------------

    def find_notes(self, query):
        """Ids of the notes matching a search (e.g. `"deck:Languages::Spanish"`), sorted."""
        return sorted(self.col.find_notes(query))

    def find_cards(self, query):
        """Ids of the cards matching a search, sorted."""
        return sorted(self.col.find_cards(query))

    def move_cards(self, cids, deck):
        """Moves cards to deck `deck` (created if missing)."""
        self.col.set_deck(cids, self.col.decks.id(deck))

    def suspend_cards(self, cids):
        self.col.sched.suspend_cards(cids)

    def flag_cards(self, cids, flag):
        """Sets user flag `flag` (0 = none, 1 = red .. 7) on the cards."""
        self.col.set_user_flag_for_cards(flag, cids)

    def note_fields(self, nid):
        return list(self.col.get_note(nid).fields)

    def edit_note(self, nid, field, value):
        """Sets one field (by name, or by index when `field` is an int) of note `nid`."""
        note = self.col.get_note(nid)
        if isinstance(field, int):
            note.fields[field] = value
        else:
            note[field] = value
        self.col.update_note(note)

    def delete_notes(self, nids):
        """Removes the notes (and their cards); returns how many notes were removed (the
        client's own count is of cards)."""
        before = self.col.note_count()
        self.col.remove_notes(nids)
        return before - self.col.note_count()

    def answer_cards(self, n, ease, deck):
        """Studies up to `n` cards of `deck` (and its children), answering each with `ease`
        (1-4): every answer writes one revlog row. Returns the number answered."""
        col = self.col
        if V11 and not col.v3_scheduler():
            # A collection from the legacy client may still use the v2 scheduler, which
            # current clients no longer run: switch it to v3 as the desktop app does (a
            # config change that a normal sync carries; the legacy client runs v3 too).
            col.set_v3_scheduler(True)
            col._load_scheduler()
        col.decks.select(col.decks.id(deck))
        self._reset_scheduler()
        answered = 0
        while answered < n:
            card = col.sched.getCard()
            if card is None:
                break
            col.sched.answerCard(card, ease)
            answered += 1
            self._reset_scheduler()
        return answered

    def add_deck(self, name):
        """Creates deck `name` (parents included); returns its id."""
        return self.col.decks.id(name)

    def rename_deck(self, old, new):
        self.col.decks.rename(self.col.decks.id(old, create=False), new)

    def set_deck_config(self, name, path, value):
        """Sets one value of deck options preset `name`; `path` is the key path, e.g.
        `["new", "perDay"]`."""
        conf = next(c for c in self.col.decks.all_config() if c["name"] == name)
        target = conf
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        self.col.decks.update_config(conf)

    def add_tags(self, nids, tags):
        """Adds the space-separated `tags` to the notes; returns how many notes changed."""
        return self.col.tags.bulk_add(nids, tags).count

    def set_config(self, key, value):
        self.col.set_config(key, value)

    def set_notetype_css(self, notetype, css):
        """A change that needs no full sync: the notetype's css."""
        models = self.col.models
        nt = models.by_name(notetype)
        nt["css"] = css
        models.save(nt)

    def add_notetype(self, name, base):
        """A new notetype `name`, a copy of notetype `base` (no schema change); returns its
        id."""
        models = self.col.models
        notetype = models.copy(models.by_name(base), add=False)
        notetype["name"] = name
        models.add(notetype)
        return models.by_name(name)["id"]

    def add_field(self, notetype, field):
        """A schema change: adds field `field` to the notetype. As in the GUI, the user has
        accepted that the next sync must be a one-way sync."""
        self.col.mod_schema(check=False)
        models = self.col.models
        nt = models.by_name(notetype)
        models.add_field(nt, models.new_field(field))
        models.save(nt)

    def add_notes_bulk(self, n, prefix):
        """`add_notes` for thousands of notes: one backend call where the client has one,
        else a loop inside the legacy layer's single open transaction. Returns the count."""
        col = self.col
        notetype = col.models.by_name("Basic")
        notes = []
        for i in range(n):
            note = col.new_note(notetype)
            note["Front"] = f"{prefix} {i} front"
            note["Back"] = f"{prefix} {i} back"
            notes.append(note)
        if hasattr(col, "add_notes"):
            from anki.collection import AddNoteRequest
            col.add_notes([AddNoteRequest(note=note, deck_id=1) for note in notes])
        else:
            for note in notes:
                col.add_note(note, 1)
        return len(notes)

    def _config_values(self, label):
        return {
            "e2eText": f"{label}: café ☕",
            "e2eList": [1, 2, label],
            "e2eObject": {"label": label, "nested": {"n": 42, "on": True}},
            "sortBackwards": True,
        }

    def _reset_scheduler(self):
        # 2.1.49's v1/v2 schedulers build their queues in Python and must be told when the
        # collection changed; current clients rebuild them in the backend.
        if not V11:
            self.col.reset()

    def force_full_sync(self):
        """Marks the collection's schema as modified, as a user confirming a one-way sync
        does: the next normal sync then asks for a full sync."""
        self.col.set_schema_modified()

    def open_dataset(self, path):
        """Replaces this device's collection with a copy of the collection file at `path`."""
        self.col.close()
        for suffix in ["-wal", "-shm"]:
            if os.path.exists(self.path + suffix):
                os.remove(self.path + suffix)
        shutil.copyfile(path, self.path)
        self.col = Collection(self.path)
        return self.col.note_count()

    def note_count(self):
        return self.col.note_count()

    def card_count(self):
        return self.col.card_count()

    # -- media -----------------------------------------------------------------------------

    def write_media(self, files):
        """Writes each [name, size, seed] through the client's media API, which normalises
        the name (NFC, …) as the GUI does when a file is added; the bytes are a deterministic
        function of seed and size. Returns the names as stored."""
        return [self.col.media.write_data(name, random.Random(seed).randbytes(size))
                for name, size, seed in files]

    def sync_media(self):
        auth = self._auth()
        if not V11:
            # 2.1.49 syncs media in the foreground.
            return self._in_sync_window(lambda: self.col.sync_media(auth))
        self._client_call(lambda: self.col.sync_media(auth))
        # The sync runs in the background; its status raises if it failed.
        while self._client_call(self.col.media_sync_status).active:
            time.sleep(0.05)

    def media_files(self):
        """{name: {"size": n, "sha1": hex}} of the files in the media folder."""
        folder = self.col.media.dir()
        out = {}
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    data = f.read()
                out[name] = {"size": len(data), "sha1": hashlib.sha1(data).hexdigest()}
        return out

    def trash_media(self, names):
        """Deletes files as the GUI's Check Media does: moved to the trash and registered as
        deletions for the next media sync."""
        self.col.media.trash_files(names)

    def dump(self):
        def rows(columns, table):
            sql = f"select {', '.join(columns)} from {table} order by id"
            return [dict(zip(columns, row)) for row in self.col.db.all(sql)]

        return {
            "notes": rows(NOTE_COLUMNS, "notes"),
            "cards": rows(CARD_COLUMNS, "cards"),
            "revlog": rows(REVLOG_COLUMNS, "revlog"),
            "decks": {d["name"]: d for d in self.col.decks.all()},
            "notetypes": {m["name"]: m for m in self.col.models.all()},
            "deck_configs": {c["name"]: c for c in self.col.decks.all_config()},
            "tags": sorted(self.col.tags.all()),
            "config": {key: self.col.get_config(key, None) for key in CONFIG_KEYS},
            "col": dict(zip(COL_COLUMNS, self.col.db.first(
                f"select {', '.join(COL_COLUMNS)} from col"))),
        }


def main():
    device = Device(sys.argv[1])
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request["cmd"]
        try:
            if cmd.startswith("_"):
                raise ValueError(f"not a command: {cmd}")
            reply = {"ok": getattr(device, cmd)(**request.get("args", {}))}
        except SyncFailure as f:
            reply = {"failure": {"kind": f.kind, "message": f.message}}
        except Exception:
            reply = {"error": traceback.format_exc()}
        _channel.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
