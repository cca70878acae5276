/*
 * SSEParser: the `text/event-stream` parser of the browser client (see stream.js, which feeds
 * it what `fetch` streams of GET /jobs/<uuid>/events).
 *
 * A plain ES module, no build and no dependencies, and nothing runs when it is imported: the
 * page imports it through stream.js, and Node imports it for tests/js/sse_parser.test.js.
 */

/**
 * Incremental parser for the `text/event-stream` format (WHATWG "Server-sent events",
 * "Interpreting an event stream"). Feed it decoded text in chunks of any size; a chunk may end
 * anywhere, even between the CR and LF of a CRLF.
 *
 * onEvent receives `{id, type, data, lastEventId}`:
 * - `id`: the value of the `id` field given in *this* event block, or null if it had none
 *   (the spec's last-event-ID buffer, which carries over between events, is `lastEventId`).
 * - `type`: the `event` field, or "message".
 * - `data`: the `data` lines joined with "\n".
 * As the spec says, a block without any `data` line is not dispatched, and an unterminated
 * block at the end of the stream is dropped. onComment receives the text after ":".
 */
export class SSEParser {
  constructor({ onEvent, onComment, onRetry } = {}) {
    this._onEvent = onEvent || function () {};
    this._onComment = onComment || function () {};
    this._onRetry = onRetry || function () {};
    this._buffer = "";
    this._skipLF = false; // the previous chunk ended with CR: a leading LF belongs to it
    this._firstChunk = true;
    this.lastEventId = "";
    this._resetBlock();
  }

  _resetBlock() {
    this._data = "";
    this._hasData = false;
    this._type = "";
    this._blockId = null;
  }

  /** Parse a chunk of text. */
  feed(text) {
    if (!text) return;
    if (this._firstChunk) {
      this._firstChunk = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this._skipLF) {
      this._skipLF = false;
      if (text.charCodeAt(0) === 10) text = text.slice(1);
    }
    let buffer = this._buffer + text;
    let start = 0;
    for (;;) {
      const cr = buffer.indexOf("\r", start);
      const lf = buffer.indexOf("\n", start);
      if (cr === -1 && lf === -1) break;
      let end;
      let next;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        end = cr;
        if (cr + 1 < buffer.length) {
          next = buffer.charCodeAt(cr + 1) === 10 ? cr + 2 : cr + 1;
        } else {
          next = cr + 1;
          this._skipLF = true; // CR at the end of the chunk: maybe half of a CRLF
        }
      } else {
        end = lf;
        next = lf + 1;
      }
      this._line(buffer.slice(start, end));
      start = next;
    }
    this._buffer = buffer.slice(start);
  }

  /** The stream ended: drop any unterminated line and block, as the spec says. */
  end() {
    this._buffer = "";
    this._skipLF = false;
    this._resetBlock();
  }

  _line(line) {
    if (line === "") {
      this._dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58 /* ":" */) {
      this._onComment(line.slice(1).replace(/^ /, ""));
      return;
    }
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (field) {
      case "event":
        this._type = value;
        break;
      case "data":
        this._data += value + "\n";
        this._hasData = true;
        break;
      case "id":
        if (value.indexOf("\0") === -1) {
          this.lastEventId = value;
          this._blockId = value;
        }
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this._onRetry(parseInt(value, 10));
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  _dispatch() {
    if (!this._hasData) {
      this._resetBlock();
      return;
    }
    const message = {
      id: this._blockId,
      type: this._type || "message",
      data: this._data.slice(0, -1),
      lastEventId: this.lastEventId,
    };
    this._resetBlock();
    this._onEvent(message);
  }
}
