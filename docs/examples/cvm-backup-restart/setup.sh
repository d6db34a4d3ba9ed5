#!/bin/sh
# Best practice (b): CVM abnormal -> snapshot and restart, then a notification.
# On the built-in `default` cloud service event set:
#   rule 1 `cvm-disk-readonly`: DiskReadonly alarms (status "1", not their recoveries)
#     -> `command` target `backup-reboot` (the configured program cvm-backup-reboot)
#     -> `notify` target `wecom`
#   rule 2 `cvm-guest-reboot`: GuestReboot events -> `notify` target `wecom`
# Talks to $EVENTBUS_SERVER (default http://127.0.0.1:8080).
#   WECOM_URL  the robot's webhook (default: the local stand-in on port 9200)
#   EVENTBUS   the eventbus binary (default: eventbus on PATH)
set -eu
EVENTBUS=${EVENTBUS:-eventbus}
WECOM_URL=${WECOM_URL:-http://127.0.0.1:9200/cgi-bin/webhook/send?key=demo-key}
notify="{\"name\": \"wecom\", \"type\": \"notify\",
  \"notify\": {\"provider\": \"wecom\", \"url\": \"$WECOM_URL\"},
  \"retry\": {\"max_attempts\": 10, \"initial_backoff_ms\": 1000}}"

"$EVENTBUS" rules create default cvm-disk-readonly \
  --description "CVM disk read-only: snapshot the disk and restart the instance" \
  --pattern '{"source": ["cvm.cloud.tencent"],
              "type": ["cvm:ErrorEvent:DiskReadonly"], "status": ["1"]}'
"$EVENTBUS" targets create default cvm-disk-readonly --body '{
  "name": "backup-reboot", "type": "command",
  "command": {"name": "cvm-backup-reboot"},
  "retry": {"max_attempts": 5, "initial_backoff_ms": 2000},
  "dead_letter": {"mode": "dlq"}}'
"$EVENTBUS" targets create default cvm-disk-readonly --body "$notify"

"$EVENTBUS" rules create default cvm-guest-reboot \
  --description "CVM instance restarted" \
  --pattern '{"source": ["cvm.cloud.tencent"], "type": ["cvm:ErrorEvent:GuestReboot"]}'
"$EVENTBUS" targets create default cvm-guest-reboot --body "$notify"
