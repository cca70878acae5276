"""A separate publishing process for ours on Redis: ``python -m bench.anchors.publisher``.

Runs with the portal's environment (``DATABASE_URL``, ``REDIS_URL``) and reads one JSON
command per line on stdin, answering one JSON line on stdout:

- ``{"key": JOB_ID}``: append and publish one stamped event; answers ``{"stamp": S}``;
- ``{"keys": [...], "period": P, "duration": D}``: emit every P s for D s;
  answers ``{"sent": n, "behind_max": s}`` when done.
"""

import functools
import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot.settings")


def main() -> None:
    import django

    django.setup()
    from bench.anchors.endpoint import emit_every
    from bench.anchors.publishers import portal_publish

    publish = functools.partial(portal_publish, keep_connection=True)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if "key" in command:
            answer = {"stamp": publish(command["key"])}
        else:
            answer = emit_every(
                publish=publish,
                keys=command["keys"],
                period=float(command["period"]),
                duration=float(command["duration"]),
            )
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
