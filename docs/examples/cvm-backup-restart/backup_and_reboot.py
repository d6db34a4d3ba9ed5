#!/usr/bin/env python3
"""eventbus `command` target: back up and restart a CVM instance whose disk went read-only.

eventbus runs this program with the matched event on stdin (one CloudEvents JSON object; a
JSON array when the binding batches). For each event it takes `subject` as the instance id,
as Tencent's best practice does, then asks the cloud API to

  1. CreateSnapshot of the instance's disk (`data.additionalMsg.diskId` or `data.diskId` when
     the event has it, else the instance's system disk `disk-<instance suffix>`), and
  2. RebootInstances with StopType SOFT.

The cloud API is a stand-in here: CLOUD_API_URL (default http://127.0.0.1:9100/) receives one
JSON POST per call, {"Action": …, …}, and must answer 2xx. Any failure exits non-zero, so
eventbus retries the event with backoff and, when retries run out, dead-letters it.
Standard library only.
"""

import json
import os
import sys
import urllib.request

API = os.environ.get("CLOUD_API_URL", "http://127.0.0.1:9100/")
REGION = os.environ.get("CLOUD_REGION", "ap-guangzhou")


def call(action, **params):
    body = json.dumps({"Action": action, "Region": REGION, **params}).encode()
    req = urllib.request.Request(
        API, data=body, headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        if not 200 <= resp.status < 300:
            raise RuntimeError(f"{action}: HTTP {resp.status}")
    print(f"{action} {json.dumps(params, sort_keys=True)}", file=sys.stderr)


def handle(event):
    instance = event.get("subject")
    if not isinstance(instance, str) or not instance.startswith("ins-"):
        raise ValueError(f"event {event.get('id')!r}: subject {instance!r} is not an instance id")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    extra = data.get("additionalMsg") if isinstance(data.get("additionalMsg"), dict) else {}
    disk = extra.get("diskId") or data.get("diskId") or "disk-" + instance[len("ins-"):]
    call("CreateSnapshot", DiskId=disk, SnapshotName=f"eventbus-{event.get('id')}")
    call("RebootInstances", InstanceIds=[instance], StopType="SOFT")


def main():
    doc = json.load(sys.stdin)
    for event in doc if isinstance(doc, list) else [doc]:
        handle(event)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the message reaches the binding's last error and the dead letter
        print(f"backup_and_reboot: {e}", file=sys.stderr)
        sys.exit(1)
