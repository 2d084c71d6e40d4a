"""JSON text ⇄ typed Arrow values, whole arrays at a time.

Any schema'd topic accepts values as JSON text, and typed values go back out as JSON
text where a client needs bytes (Kafka consumers of JSON Schema topics, the CLI, reads
across topics). Both directions run in native code:

* :func:`decode_json` joins the payloads into newline-delimited JSON and hands them to
  Arrow's JSON reader with the value type as its explicit schema (types the reader
  cannot produce are read as their JSON form, e.g. dates as strings, and converted
  after). Raw line breaks can only be whitespace in JSON, and inside strings they are
  invalid, so they become tabs (also whitespace, also invalid inside strings): every
  payload stays one line and its validity does not change.
* :func:`encode_json` builds the text with Arrow string kernels, field by field:
  numbers cast to strings, strings escaped and quoted, structs and maps assembled with
  ``binary_join_element_wise``, lists with ``binary_join`` over their flattened items,
  bytes as base64 computed with NumPy on the data buffer.

Refusals are exact because one strict per-record reading (Python's ``json`` and a walk
of the type) decides them; it runs only when the native path refuses something, to name
the first offending record and the path inside it. It is also how values whose type has
a map are read (Arrow's JSON reader has no maps), and a batch mixing ISO-8601 and
integer forms of one timestamp field.

Modules: json_decode.py (the native reading), json_records.py (the per-record
reading), json_encode.py (values to text), json_forms.py (what they share).
"""

from __future__ import annotations

from odradek.schemas.json_decode import decode_json
from odradek.schemas.json_encode import encode_json

__all__ = ["decode_json", "encode_json"]
