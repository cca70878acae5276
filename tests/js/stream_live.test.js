/*
 * The client against a real HTTP server on 127.0.0.1, with Node's real fetch, AbortController,
 * TextDecoder and timers: proves the streaming, abort and resume paths work outside the fakes.
 * Delays are made short through options (baseDelayMs, heartbeatMs), never by faking the clock.
 */

import test from "node:test";
import assert from "node:assert/strict";
import http from "node:http";

import { JobStream } from "../../static/copilot/stream.js";

/** Start a server whose answers are scripted per connection: handlers[i](req, res). */
async function startServer(handlers) {
  const seen = [];
  const server = http.createServer((req, res) => {
    const index = seen.length;
    seen.push({ url: req.url, lastEventId: req.headers["last-event-id"] || null, closed: false });
    req.socket.on("close", () => {
      seen[index].closed = true;
    });
    const handler = handlers[Math.min(index, handlers.length - 1)];
    handler(req, res);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/jobs/3b9e/events`,
    seen,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function sseHead(res) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.flushHeaders();
}

/** Run a JobStream until it reaches one of `until` states; resolves with what it saw. */
function follow(url, options = {}, until = ["done", "lost", "gone", "unauthorized"]) {
  return new Promise((resolve, reject) => {
    const events = [];
    const states = [];
    const guard = setTimeout(() => {
      stream.stop();
      reject(new Error(`no final state; states: ${JSON.stringify(states)}`));
    }, 10000);
    const stream = new JobStream({
      url,
      heartbeatMs: 2000,
      baseDelayMs: 20,
      eventTarget: null,
      onEvent: (evt) => events.push(evt),
      onState: (state, info) => {
        states.push({ state, ...info });
        if (until.includes(state)) {
          clearTimeout(guard);
          // Let the stream finish its own cleanup before the test inspects it.
          setImmediate(() => resolve({ events, states, stream }));
        }
      },
      ...options,
    });
    stream.start();
  });
}

test("real HTTP: a cut connection resumes with Last-Event-ID and runs to the terminal event", async () => {
  const server = await startServer([
    (req, res) => {
      sseHead(res);
      res.write('event: snapshot\ndata: {"status":"running"}\n\n');
      res.write('id: 1\nevent: status\ndata: {"status":"running"}\n\n');
      // Split inside the two bytes of "\u00e9", inside the four of the rocket, between the CR
      // and LF of a CRLF and before the last LF: each piece a separate TCP write.
      const bytes = Buffer.from(
        'id: 2\r\nevent: progress\r\ndata: {"phase":"r\u00e9sum\u00e9 \ud83d\ude80"}\r\n\r\n',
      );
      const cuts = [0, 47, 51, 56, 58, bytes.length];
      const writePiece = (i) => {
        if (i + 1 >= cuts.length) {
          setTimeout(() => res.destroy(), 30); // cut, no terminal event
          return;
        }
        res.write(bytes.subarray(cuts[i], cuts[i + 1]));
        setTimeout(() => writePiece(i + 1), 10);
      };
      writePiece(0);
    },
    (req, res) => {
      sseHead(res);
      // A server that replays too much: the client must skip 2.
      res.write('id: 2\nevent: progress\ndata: {"phase":"dup"}\n\n');
      res.write(": ping\n\n");
      res.write('id: 3\nevent: result\ndata: {"terminal":true,"agent_json":{"id":"a"}}\n\n');
      // The server leaves the stream open: the client closes it.
    },
  ]);
  try {
    const { events, states, stream } = await follow(server.url);
    assert.deepEqual(
      events.map((e) => [e.id, e.type]),
      [
        [null, "snapshot"],
        [1, "status"],
        [2, "progress"],
        [3, "result"],
      ],
    );
    assert.equal(events[2].data.phase, "r\u00e9sum\u00e9 \ud83d\ude80");
    assert.deepEqual(
      states.map((s) => s.state),
      ["connecting", "open", "reconnecting", "connecting", "open", "done"],
    );
    assert.equal(server.seen.length, 2);
    assert.equal(server.seen[0].lastEventId, null);
    assert.equal(server.seen[1].lastEventId, "2");
    assert.equal(server.seen[1].url, "/jobs/3b9e/events?last_event_id=2");
    assert.equal(stream.state, "done");
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(server.seen[1].closed, true, "the client closed the finished stream");
  } finally {
    await server.close();
  }
});

test("real HTTP: a planned reconnect event leads straight to a new connection", async () => {
  const server = await startServer([
    (req, res) => {
      sseHead(res);
      res.write('id: 1\nevent: status\ndata: {"status":"running"}\n\n');
      res.end("event: reconnect\ndata: null\n\n");
    },
    (req, res) => {
      sseHead(res);
      res.end('id: 2\nevent: cancelled\ndata: {"terminal":true}\n\n');
    },
  ]);
  try {
    const { events, states } = await follow(server.url);
    assert.deepEqual(
      events.map((e) => e.id),
      [1, 2],
    );
    assert.equal(states.some((s) => s.state === "reconnecting"), false);
    assert.equal(server.seen[1].lastEventId, "1");
  } finally {
    await server.close();
  }
});

test("real HTTP: the watchdog aborts a silent connection; 204 on resume means done", async () => {
  const server = await startServer([
    (req, res) => {
      sseHead(res);
      res.write('id: 4\nevent: result\ndata: {"status":"completed"}\n\n');
      // then silence: no ping, no end
    },
    (req, res) => {
      res.writeHead(204);
      res.end();
    },
  ]);
  try {
    const { states } = await follow(server.url, { heartbeatMs: 80 });
    assert.deepEqual(
      states.map((s) => s.state),
      ["connecting", "open", "reconnecting", "connecting", "done"],
    );
    assert.equal(states[2].reason, "watchdog");
    assert.equal(server.seen[0].closed, true, "the silent connection was aborted");
    assert.equal(server.seen[1].lastEventId, "4");
  } finally {
    await server.close();
  }
});

test("real HTTP: 401 is unauthorized, 404 is gone, a dead port is lost after 3 retries", async () => {
  const server = await startServer([
    (req, res) => {
      res.writeHead(req.url.includes("missing") ? 404 : 401, { "content-type": "text/plain" });
      res.end("no");
    },
  ]);
  try {
    let result = await follow(server.url);
    assert.equal(result.stream.state, "unauthorized");
    result = await follow(server.url.replace("3b9e", "missing"));
    assert.equal(result.stream.state, "gone");
  } finally {
    await server.close();
  }
  // Nothing listens there any more: connection refused, every time.
  const result = await follow(server.url);
  assert.deepEqual(
    result.states.filter((s) => s.state === "reconnecting").map((s) => s.attempt),
    [1, 2, 3],
  );
  assert.equal(result.stream.state, "lost");
  result.stream.stop();
});
