import test from "node:test";
import assert from "node:assert/strict";

import { SSEParser } from "../../static/copilot/sse_parser.js";

function parseChunks(chunks) {
  const events = [];
  const comments = [];
  const retries = [];
  const parser = new SSEParser({
    onEvent: (e) => events.push({ id: e.id, type: e.type, data: e.data }),
    onComment: (c) => comments.push(c),
    onRetry: (ms) => retries.push(ms),
  });
  for (const chunk of chunks) parser.feed(chunk);
  parser.end();
  return { events, comments, retries, parser };
}

const STREAM =
  "event: snapshot\r\ndata: {\"status\":\"running\"}\r\n\r\n" +
  ": ping\n\n" +
  "id: 1\nevent: status\ndata: {\"status\":\"running\"}\n\n" +
  "id: 2\revent: progress\rdata: line one\rdata: line two\r\r" +
  "id: 3\r\nevent: result\r\ndata: {\"terminal\":true,\"text\":\"caf\u00e9 \ud83d\ude80\"}\r\n\r\n";

const EXPECTED = [
  { id: null, type: "snapshot", data: '{"status":"running"}' },
  { id: "1", type: "status", data: '{"status":"running"}' },
  { id: "2", type: "progress", data: "line one\nline two" },
  { id: "3", type: "result", data: '{"terminal":true,"text":"caf\u00e9 \ud83d\ude80"}' },
];

test("parses a whole stream with CRLF, CR and LF line ends", () => {
  const { events, comments } = parseChunks([STREAM]);
  assert.deepEqual(events, EXPECTED);
  assert.deepEqual(comments, ["ping"]);
});

test("the same events whatever the chunk boundaries (every split point, mid-CRLF too)", () => {
  for (let i = 0; i <= STREAM.length; i += 1) {
    const { events } = parseChunks([STREAM.slice(0, i), STREAM.slice(i)]);
    assert.deepEqual(events, EXPECTED, `split at ${i}`);
  }
  for (let i = 1; i < STREAM.length; i += 7) {
    for (let j = i; j < STREAM.length; j += 11) {
      const { events } = parseChunks([STREAM.slice(0, i), STREAM.slice(i, j), STREAM.slice(j)]);
      assert.deepEqual(events, EXPECTED, `split at ${i} and ${j}`);
    }
  }
});

test("one character at a time", () => {
  const { events, comments } = parseChunks([...STREAM]);
  assert.deepEqual(events, EXPECTED);
  assert.deepEqual(comments, ["ping"]);
});

test("a CR at a chunk end followed by LF is one line end, not two", () => {
  // Were "\r" + "\n" seen as two line ends, the empty line would dispatch "a" early and
  // "b" would become a second event.
  const { events } = parseChunks(["data: a\r", "\ndata: b\r", "\n\r", "\n"]);
  assert.deepEqual(events, [{ id: null, type: "message", data: "a\nb" }]);
});

test("a CR at a chunk end followed by something else still ends the line", () => {
  const { events } = parseChunks(["data: a\r", "data: b\r", "\r"]);
  assert.deepEqual(events, [{ id: null, type: "message", data: "a\nb" }]);
});

test("comments are not events and may contain colons", () => {
  const { events, comments } = parseChunks([": ping\n", ":no space: here\n", "data: x\n\n"]);
  assert.deepEqual(comments, ["ping", "no space: here"]);
  assert.deepEqual(events, [{ id: null, type: "message", data: "x" }]);
});

test("field values: one leading space stripped, a line without colon is a field with empty value", () => {
  const { events } = parseChunks(["data:no-space\ndata:  two-spaces\ndata\n\n"]);
  assert.deepEqual(events, [{ id: null, type: "message", data: "no-space\n two-spaces\n" }]);
});

test("a block without data is not dispatched, its event type does not leak", () => {
  const { events, parser } = parseChunks(["id: 7\nevent: status\n\n", "data: x\n\n"]);
  assert.deepEqual(events, [{ id: null, type: "message", data: "x" }]);
  assert.equal(parser.lastEventId, "7", "the id buffer is kept, as the spec says");
});

test("per-event id is only the id given in that block", () => {
  const { events } = parseChunks(["id: 4\ndata: a\n\n", "event: reconnect\ndata: null\n\n"]);
  assert.deepEqual(events, [
    { id: "4", type: "message", data: "a" },
    { id: null, type: "reconnect", data: "null" },
  ]);
});

test("an id containing NUL is ignored", () => {
  const { events } = parseChunks(["id: 1\0 2\ndata: a\n\n"]);
  assert.deepEqual(events, [{ id: null, type: "message", data: "a" }]);
});

test("empty id field is kept as the empty string", () => {
  const { events } = parseChunks(["id\ndata: a\n\n"]);
  assert.deepEqual(events, [{ id: "", type: "message", data: "a" }]);
});

test("retry field: digits only", () => {
  const { retries } = parseChunks(["retry: 2500\nretry: 1.5\nretry: x\ndata: a\n\n"]);
  assert.deepEqual(retries, [2500]);
});

test("unknown fields are ignored; unterminated block at end of stream is dropped", () => {
  const { events } = parseChunks(["foo: bar\ndata: a\n\n", "id: 9\ndata: cut off"]);
  assert.deepEqual(events, [{ id: null, type: "message", data: "a" }]);
});

test("a leading byte order mark is skipped", () => {
  const { events } = parseChunks(["\ufeffdata: a\n\n"]);
  assert.deepEqual(events, [{ id: null, type: "message", data: "a" }]);
});

test("an empty data line makes an event with empty data", () => {
  const { events } = parseChunks(["data:\n\n"]);
  assert.deepEqual(events, [{ id: null, type: "message", data: "" }]);
});
