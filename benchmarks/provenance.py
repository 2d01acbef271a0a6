"""Provenance of a published result file: which manifest entry, commit, date and command made it.

One record, ``{"entry", "commit", "date", "command", ...}`` (optional: ``"seconds"``,
``"machine"``, ``"note"``), stored in the file itself so that it travels with it:

* CSV: a first comment line ``# provenance: {...json...}``. Readers skip it with
  :func:`read_csv_rows` (or ``pandas.read_csv(path, comment="#")``);
* JSON: a top-level ``"provenance"`` key (every published JSON is an object; a list would be
  refused rather than wrapped, so a reader's expectations never change silently);
* PNG: a ``tEXt`` chunk with keyword ``provenance``, inserted before ``IEND`` without
  re-encoding the image (PIL shows it as ``Image.open(path).text["provenance"]``).

Kept out of the package: only the reproduction runner and its test use it.
"""
import csv
import io
import json
import os
import struct
import zlib

PREFIX = "# provenance: "
KEY = "provenance"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _kind(path):
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".csv", ".json", ".png"):
        raise ValueError(f"{path}: provenance is stored in .csv, .json or .png files only")
    return ext


# ---------------------------------------------------------------------------- CSV
def _split_csv(text):
    """(provenance line or None, the CSV text without it)."""
    first, sep, rest = text.partition("\n")
    if first.startswith(PREFIX):
        return first, rest
    return None, text


def read_csv_rows(path):
    """The rows of a published CSV as dicts, its provenance line skipped."""
    with open(path, newline="") as f:
        _, body = _split_csv(f.read())
    return list(csv.DictReader(io.StringIO(body)))


# ---------------------------------------------------------------------------- PNG
def _png_chunks(data):
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    pos, chunks = len(_PNG_SIGNATURE), []
    while pos < len(data):
        length, = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        chunks.append((kind, body, data[pos:pos + 12 + length]))
        pos += 12 + length
    return chunks


def _png_text(data):
    for kind, body, _ in _png_chunks(data):
        if kind == b"tEXt":
            keyword, _, value = body.partition(b"\0")
            if keyword == KEY.encode():
                return value.decode("latin-1")
    return None


def _png_with_text(data, value):
    out = [_PNG_SIGNATURE]
    # tEXt is Latin-1: keep the record ASCII (json.dumps escapes everything else)
    body = KEY.encode() + b"\0" + value.encode("latin-1")
    chunk = (struct.pack(">I", len(body)) + b"tEXt" + body +
             struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF))
    for kind, body_, raw in _png_chunks(data):
        if kind == b"tEXt" and body_.partition(b"\0")[0] == KEY.encode():
            continue  # replaced
        if kind == b"IEND":
            out.append(chunk)
        out.append(raw)
    return b"".join(out)


# ---------------------------------------------------------------------------- API
def read(path):
    """The provenance record of a published file, or None when it has none."""
    kind = _kind(path)
    if kind == ".csv":
        with open(path, newline="") as f:
            line, _ = _split_csv(f.read())
        return None if line is None else json.loads(line[len(PREFIX):])
    if kind == ".json":
        with open(path) as f:
            data = json.load(f)
        return data.get(KEY) if isinstance(data, dict) else None
    with open(path, "rb") as f:
        text = _png_text(f.read())
    return None if text is None else json.loads(text)


def stamp(path, record):
    """Write ``record`` (a dict) into ``path`` in place, replacing any earlier provenance."""
    kind = _kind(path)
    line = json.dumps(record, ensure_ascii=True)
    if kind == ".csv":
        with open(path, newline="") as f:
            _, body = _split_csv(f.read())
        with open(path, "w", newline="") as f:
            f.write(PREFIX + line + "\n" + body)
    elif kind == ".json":
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a JSON list has no place for provenance; publish an object")
        data = {k: v for k, v in data.items() if k != KEY}
        with open(path, "w") as f:
            json.dump({KEY: record, **data}, f, indent=1)
            f.write("\n")
    else:
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(_png_with_text(data, line))
    return path
